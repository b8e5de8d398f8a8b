"""The commands `ftool` dispatches to. Torch-free: `ftool --help` reads this table."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Command:
    name: str
    module: str  # defines run(cfg, run_dir, **options)
    summary: str
    options: dict = field(default_factory=dict)  # option -> default (None: required; (): repeatable, required)
    reuses_run: bool = False  # composes its config from the run that `ckpt` points at
    hydra: bool = True  # False: run(arguments, **options) on the command line's folders, no config
    trains: bool = False  # makes a run dir of its own; trainer.devices, trainer.resume=<path> apply
    reads_data: bool = True  # False: takes the data's description from the run, so data.* settings change nothing


COMMANDS = {c.name: c for c in (
    Command("train", "ftool.commands.train", "train a model; writes a run directory", trains=True),
    Command("eval", "ftool.commands.eval", "evaluate a run's checkpoint: ckpt=<run dir|file> [split=test|val|train|all]",
            options={"ckpt": None, "split": "test"}, reuses_run=True),
    Command("finetune", "ftool.commands.finetune",
            "fine-tune pretrained weights on new data or classes: finetune.from=<run dir|file>, or the model's "
            "own (model=hf_classifier, model.weights=...)", trains=True),
    Command("predict", "ftool.commands.predict",
            "label new inputs: ckpt=<run dir|file> input=<text|text file|table|-|image|folder|numbers> [input=...] "
            "[output=json|csv] [text_column=<a table's column of texts>]",
            options={"ckpt": None, "input": (), "output": "table", "text_column": ""}, reuses_run=True,
            reads_data=False),
    Command("export", "ftool.commands.export",
            "export a run's model: ckpt=<run dir|file> format=safetensors|torchscript|pt2|onnx [out=<path>]",
            options={"ckpt": None, "format": "safetensors", "out": ""}, reuses_run=True, reads_data=False),
    Command("report", "ftool.commands.report", "curves (PNG) and tables of a run or a sweep, or of several compared: "
            "report <dir> [<dir> ...] [out=<dir>]", options={"out": ""}, hydra=False),
)}
