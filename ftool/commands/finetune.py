"""`ftool finetune finetune.from=<run dir|checkpoint> [overrides]`: train, starting from a
pretrained ftool run: the layers that fit are loaded, a head of another size starts fresh,
`finetune.freeze` and `finetune.backbone_lr_mult` apply. The run dir is a train run's."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ftool.commands import train
from ftool.errors import FtoolError


def run(cfg: DictConfig, run_dir: Path) -> float | None:
    if not (cfg.get("finetune") or {}).get("from"):
        raise FtoolError("finetune needs finetune.from=<run dir or checkpoint> (a pretrained ftool run)")
    return train.run(cfg, run_dir, command="finetune")
