"""The commands `ftool` dispatches to. Torch-free: `ftool --help` reads this table."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Command:
    name: str
    module: str  # its run(): train's (rc, run_dir, command); a reused run's (trained, **options); report's (paths, ...)
    summary: str
    options: dict = field(default_factory=dict)  # option -> default (None: required; (): repeatable, required)
    choices: dict = field(default_factory=dict)  # option -> the values it takes
    reuses_run: bool = False  # its config is the record of the run that `ckpt` names, with the overrides on top
    hydra: bool = True  # False: run(arguments, **options) on the command line's folders, no config
    trains: bool = False  # makes a run dir of its own; sweeps, trainer.devices and trainer.resume apply


COMMANDS = {c.name: c for c in (
    Command("train", "ftool.commands.train", "train a model; writes a run directory", trains=True),
    Command("eval", "ftool.commands.eval", "evaluate a run's checkpoint: ckpt=<run dir|file> [split=test|val|train|all]",
            options={"ckpt": None, "split": "test"}, choices={"split": ("test", "val", "train", "all")}, reuses_run=True),
    Command("finetune", "ftool.commands.train", "fine-tune pretrained weights on new data or classes: "
            "finetune.from=<run dir|file>, or the model's own (model=hf_classifier, model.weights=...)", trains=True),
    Command("predict", "ftool.commands.predict", "label new inputs: ckpt=<run dir|file> input=<text|file|folder|table|"
            "-|numbers> [input=...] [output=table|json|csv] [text_column=<name>]",
            options={"ckpt": None, "input": (), "output": "table", "text_column": ""},
            choices={"output": ("table", "json", "csv")}, reuses_run=True),
    Command("export", "ftool.commands.export", "export a run's model: ckpt=<run dir|file> "
            "format=safetensors|torchscript|pt2|onnx [out=<path>]",
            options={"ckpt": None, "format": "safetensors", "out": ""},
            choices={"format": ("safetensors", "torchscript", "pt2", "onnx")}, reuses_run=True),
    Command("report", "ftool.commands.report", "curves (PNG) and tables of a run or a sweep, or of several compared: "
            "report <dir> [<dir> ...] [out=<dir>]", options={"out": ""}, hydra=False),
)}
