"""`ftool finetune [finetune.from=<run dir|checkpoint|weights file>] [overrides]`: train, starting from
pretrained weights: an ftool run's or a weights file's (the layers that fit are loaded, a head of another
size starts fresh) or the model's own (model=hf_classifier, model.weights=...). `finetune.freeze`,
`unfreeze_at_epoch`, `backbone_lr_mult`, `layer_lr_decay` and `lora` apply. The run dir is a train run's."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ftool.commands import train


def run(cfg: DictConfig, run_dir: Path) -> float | None:
    return train.run(cfg, run_dir, command="finetune")
