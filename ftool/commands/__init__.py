"""The commands `ftool` dispatches to. Torch-free: `ftool --help` reads this table."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Command:
    name: str
    module: str  # defines run(cfg, run_dir, **options)
    summary: str
    options: dict = field(default_factory=dict)  # command option -> default (None: required)
    reuses_run: bool = False  # composes its config from the run that `ckpt` points at
    hydra: bool = True  # False: run(*arguments) on the command line's arguments, no config


COMMANDS = {c.name: c for c in (
    Command("train", "ftool.commands.train", "train a model; writes a run directory"),
    Command("eval", "ftool.commands.eval", "evaluate a run's checkpoint: ckpt=<run dir|file> [split=test|val]",
            options={"ckpt": None, "split": "test"}, reuses_run=True),
    Command("finetune", "ftool.commands.finetune",
            "fine-tune a pretrained run on new data or classes: finetune.from=<run dir|file>"),
    Command("report", "ftool.commands.report", "curves (PNG) and tables of a run or a sweep: report <dir>",
            hydra=False),
)}
