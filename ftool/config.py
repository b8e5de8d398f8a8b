"""Typed schemas for the composed config, and the one function that validates it.

Each component node (model, data, optimizer, scheduler) holds `name`, a few settings common to
every builder of its kind (the dataclasses below), and the chosen builder's own keyword arguments,
which the registry checks against the builder's signature. `validate` collects every problem at
once and raises them together, before anything is built.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from ftool.errors import FtoolError, one_line
from ftool.registry import LOSSES, close_matches_hint, expected_type

PRECISIONS = ("32", "bf16-mixed", "fp16-mixed", "auto")
SEEDS = range(2**32)  # numpy's (torch takes more, negative ones too; numpy's error was a traceback)
ACCELERATORS = ("auto", "cpu", "cuda", "mps")


def _check(errors: list[str], ok: bool, name: str, rule: str, value: Any) -> None:
    if not ok:
        errors.append(f"{name}: {rule}, got {value!r}")


def _check_choice(errors: list[str], name: str, value: Any, options: tuple, other_names: dict | None = None) -> None:
    """'trainer.precision: must be 32, bf16-mixed, fp16-mixed or auto, got 'bf16'. Did you mean 'bf16-mixed'?'
    `other_names`: other tools' names for an option (Lightning's accelerator=gpu), for the hint."""
    if value not in options:
        listed = ", ".join(map(str, options[:-1])) + f" or {options[-1]}"
        meant = (other_names or {}).get(str(value).lower())  # (their keys are lower case: GPU, Glorot)
        hint = f" Did you mean '{meant}'?" if meant else close_matches_hint(str(value), list(options))
        errors.append(f"{name}: must be {listed}, got {value!r}.{hint}")


@dataclass
class TrainerConfig:
    epochs: int = 20
    max_steps: int = -1  # > 0 stops after this many optimizer steps, whatever `epochs` says
    validate: bool = True  # false skips validation and test (benchmarks)
    val_every: int = 1  # validate every N epochs
    test: bool = True  # test the best checkpoint at the end
    seed: int = 0
    deterministic: bool = False
    progress: bool = True
    log_every_n_steps: int = 20
    monitor: Optional[str] = None  # default: val/accuracy (classification), val/loss (regression)
    mode: Optional[str] = None  # max | min; default from the metric's name
    loss: str = "auto"  # auto (from the data's task) | cross_entropy | mse | l1 | huber (the last three: regression)
    # | a loss of one's own (ftool.registry.LOSSES)
    label_smoothing: float = 0.0
    class_weights: Any = None  # null | balanced (n / (classes * count), from the train split) | [a weight per class]
    accelerator: str = "auto"
    devices: int = 1  # > 1: one process per device through torch.distributed.run
    strategy: str = "ddp"  # ddp | fsdp (FSDP2 fully_shard), with several processes
    find_unused_parameters: bool = False  # ddp: a model with parameters some steps leave unused (costs a graph walk per step)
    precision: str = "32"
    compile: Any = False  # false | true | strict (true falls back to eager where it cannot compile)
    compile_mode: str = "default"  # default | reduce-overhead | max-autotune
    channels_last: bool = False
    accumulate_grad_batches: int = 1
    grad_clip: float = 0.0  # > 0: clip gradients (by total norm, or by value)
    grad_clip_algorithm: str = "norm"
    ema_decay: float = 0.0  # > 0: keep an EMA of the weights; validate, test and save it
    on_nonfinite: str = "stop"  # a NaN/inf loss: stop (naming the step) | skip the step
    early_stopping_patience: int = 0  # > 0: stop after this many validations without improvement
    early_stopping_min_delta: float = 0.0
    checkpoint_every_n_steps: int = 0  # > 0: also save `last` every N optimizer steps (long epochs)
    save_every_n_epochs: int = 0  # > 0: keep checkpoints/epoch-N.safetensors every N epochs
    resume: Optional[str] = None  # auto (this run dir's last checkpoint, if any) | a run dir or checkpoint

    def problems(self) -> list[str]:
        e: list[str] = []
        _check(e, self.epochs >= 0, "trainer.epochs", "must be >= 0", self.epochs)
        _check(e, self.max_steps == -1 or self.max_steps > 0, "trainer.max_steps",
               "must be -1 (no limit) or > 0", self.max_steps)
        _check(e, self.epochs != 0 or self.max_steps > 0, "trainer.epochs",
               "must be > 0 unless trainer.max_steps is set", self.epochs)
        _check(e, self.val_every >= 1, "trainer.val_every", "must be >= 1", self.val_every)
        _check(e, self.log_every_n_steps >= 1, "trainer.log_every_n_steps", "must be >= 1",
               self.log_every_n_steps)
        _check(e, self.seed in SEEDS, "trainer.seed", f"must be in [0, {SEEDS[-1]}]", self.seed)
        if self.mode is not None:
            _check_choice(e, "trainer.mode", self.mode, ("max", "min"))
        _check_choice(e, "trainer.loss", self.loss, ("auto", "cross_entropy", "mse", "l1", "huber", *LOSSES.names()))
        if e and e[-1].startswith("trainer.loss:"):
            e[-1] += " A loss of your own registers in ftool.registry.LOSSES, from a module named in imports=[...]."
        _check(e, 0.0 <= self.label_smoothing < 1.0, "trainer.label_smoothing",
               "must be in [0, 1)", self.label_smoothing)
        weights = self.class_weights
        positive = isinstance(weights, list) and bool(weights) and all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0 for w in weights)
        _check(e, weights in (None, "balanced") or positive, "trainer.class_weights",
               "must be balanced, a list of weights > 0 ([1,5]: one per class) or null", weights)
        _check_choice(e, "trainer.accelerator", self.accelerator, ACCELERATORS, {"gpu": "cuda"})
        _check_choice(e, "trainer.precision", self.precision, PRECISIONS,
                      {"16": "fp16-mixed", "16-mixed": "fp16-mixed", "bf16": "bf16-mixed", "32-true": "32"})
        _check(e, self.devices >= 1, "trainer.devices", "must be >= 1", self.devices)
        _check_choice(e, "trainer.strategy", self.strategy, ("ddp", "fsdp"),  # (Lightning's names)
                      {"ddp_find_unused_parameters_true": "ddp', with 'trainer.find_unused_parameters=true"})
        _check(e, self.compile in (True, False, "strict"), "trainer.compile", "must be true, false or strict",
               self.compile)
        _check_choice(e, "trainer.compile_mode", self.compile_mode, ("default", "reduce-overhead", "max-autotune"))
        _check(e, self.accumulate_grad_batches >= 1, "trainer.accumulate_grad_batches", "must be >= 1",
               self.accumulate_grad_batches)
        _check(e, self.grad_clip >= 0, "trainer.grad_clip", "must be >= 0", self.grad_clip)
        _check_choice(e, "trainer.grad_clip_algorithm", self.grad_clip_algorithm, ("norm", "value"))
        _check(e, 0 <= self.ema_decay < 1, "trainer.ema_decay", "must be in [0, 1)", self.ema_decay)
        _check_choice(e, "trainer.on_nonfinite", self.on_nonfinite, ("stop", "skip"))
        _check(e, self.early_stopping_min_delta >= 0, "trainer.early_stopping_min_delta", "must be >= 0",
               self.early_stopping_min_delta)  # (a negative one counts a worse result as an improvement)
        for name in ("early_stopping_patience", "checkpoint_every_n_steps", "save_every_n_epochs"):
            _check(e, getattr(self, name) >= 0, f"trainer.{name}", "must be >= 0", getattr(self, name))
        return e


@dataclass
class AugmentConfig:
    crop_padding: int = 0  # random crop to the input size after padding by this many pixels
    hflip: bool = False  # random horizontal flip
    rotation: float = 0.0  # random rotation within +-degrees

    def problems(self) -> list[str]:
        e: list[str] = []
        _check(e, self.crop_padding >= 0, "data.augment.crop_padding", "must be >= 0", self.crop_padding)
        _check(e, 0.0 <= self.rotation <= 180.0, "data.augment.rotation", "must be in [0, 180]",
               self.rotation)
        return e


@dataclass
class DataConfig:
    name: str = "digits"
    batch_size: int = 64
    eval_batch_size: Optional[int] = None  # default: batch_size
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False
    val_fraction: float = 0.1  # held out of the training set for validation
    test_fraction: float = 0.2  # held out of all data, only for datasets without a test split
    test_size: Optional[int] = None  # hold out exactly this many samples instead of test_fraction
    folds: int = 0  # >= 2: cross-validation, the test split is fold `fold` of `folds` (instead of test_fraction)
    fold: int = 0
    group_by_length: bool = False  # text: batches of similar lengths (less padding)
    split_seed: int = 0
    normalize: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    classes: Optional[list] = None  # keep these classes (names or indices), relabelled 0..k-1 in this order
    args: dict = field(default_factory=dict)  # the dataset builder's own arguments

    def problems(self) -> list[str]:
        e: list[str] = []
        _check(e, self.batch_size >= 1, "data.batch_size", "must be >= 1", self.batch_size)
        _check(e, self.eval_batch_size is None or self.eval_batch_size >= 1, "data.eval_batch_size",
               "must be >= 1", self.eval_batch_size)
        _check(e, self.num_workers >= 0, "data.num_workers", "must be >= 0", self.num_workers)
        _check(e, 0.0 <= self.val_fraction < 1.0, "data.val_fraction", "must be in [0, 1)",
               self.val_fraction)
        _check(e, 0.0 < self.test_fraction < 1.0, "data.test_fraction", "must be in (0, 1)",
               self.test_fraction)
        _check(e, self.test_size is None or self.test_size >= 1, "data.test_size", "must be >= 1",
               self.test_size)
        _check(e, self.split_seed in SEEDS, "data.split_seed", f"must be in [0, {SEEDS[-1]}]", self.split_seed)
        _check(e, self.folds == 0 or self.folds >= 2, "data.folds", "must be 0 (none) or >= 2", self.folds)
        _check(e, 0 <= self.fold < max(self.folds, 1), "data.fold",
               f"must be in [0, {self.folds - 1}] (of data.folds={self.folds})" if self.folds else
               "needs data.folds (>= 2): the folds to choose from", self.fold)
        return e + self.augment.problems()


@dataclass
class ModelConfig:
    name: str = "simplecnn"
    init: str = "default"  # default (PyTorch's) | kaiming | xavier
    args: dict = field(default_factory=dict)

    def problems(self) -> list[str]:
        e: list[str] = []
        _check_choice(e, "model.init", self.init, ("default", "kaiming", "xavier"), {"he": "kaiming", "glorot": "xavier"})
        return e


@dataclass
class OptimizerConfig:
    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0  # L2, applied to weights only (not biases or norm layers)
    l1: float = 0.0  # L1 penalty coefficient added to the loss
    args: dict = field(default_factory=dict)

    def problems(self) -> list[str]:
        e: list[str] = []
        _check(e, self.lr > 0, "optimizer.lr", "must be > 0", self.lr)
        _check(e, self.weight_decay >= 0, "optimizer.weight_decay", "must be >= 0", self.weight_decay)
        _check(e, self.l1 >= 0, "optimizer.l1", "must be >= 0", self.l1)
        return e


@dataclass
class SchedulerConfig:
    name: str = "none"
    warmup_epochs: float = 0.0  # linear warmup from 0 over this many epochs (fractions allowed)
    args: dict = field(default_factory=dict)

    def problems(self) -> list[str]:
        e: list[str] = []
        _check(e, self.warmup_epochs >= 0, "scheduler.warmup_epochs", "must be >= 0",
               self.warmup_epochs)
        return e


@dataclass
class LoraConfig:
    """`finetune.lora.*`: low-rank adapters (peft) instead of training the pretrained weights."""

    r: int = 0  # > 0: LoRA with this rank; the pretrained weights stay frozen
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: Optional[list] = None  # module names; null: peft's default for the architecture


@dataclass
class FinetuneConfig:
    """`finetune.*`: start from pretrained weights: an ftool run (`finetune.from` in the YAML) or the
    model's own (`model.weights`, a Hugging Face model)."""

    # a run dir, checkpoint or weights file (safetensors, a state_dict); layers whose shapes differ start fresh
    source: Optional[str] = None
    freeze: Any = "none"  # none | backbone (the pretrained layers) | [module name prefixes]
    unfreeze_at_epoch: int = 0  # > 0: train the frozen layers too from this epoch on
    backbone_lr_mult: float = 1.0  # LR of the pretrained layers relative to optimizer.lr
    layer_lr_decay: float = 1.0  # < 1: transformer layer i of N gets decay^(N + 1 - i) of the LR (embeddings: i = 0)
    lora: LoraConfig = field(default_factory=LoraConfig)

    def problems(self) -> list[str]:
        e: list[str] = []
        _check(e, self.freeze in ("none", "backbone") or isinstance(self.freeze, list), "finetune.freeze",
               "must be none, backbone or a list of module name prefixes", self.freeze)
        _check(e, self.unfreeze_at_epoch >= 0, "finetune.unfreeze_at_epoch", "must be >= 0", self.unfreeze_at_epoch)
        _check(e, self.backbone_lr_mult > 0, "finetune.backbone_lr_mult", "must be > 0", self.backbone_lr_mult)
        _check(e, 0 < self.layer_lr_decay <= 1, "finetune.layer_lr_decay", "must be in (0, 1]", self.layer_lr_decay)
        _check(e, self.lora.r >= 0, "finetune.lora.r", "must be >= 0", self.lora.r)
        _check(e, self.lora.alpha > 0, "finetune.lora.alpha", "must be > 0 (0 scales the adapters to nothing)",
               self.lora.alpha)
        _check(e, not (self.lora.r and self.freeze != "none"), "finetune.freeze",
               "must be none with LoRA (finetune.lora.r > 0 already freezes the pretrained weights)", self.freeze)
        _check(e, not (self.lora.r and self.backbone_lr_mult != 1.0), "finetune.backbone_lr_mult",
               "must be 1 with LoRA (finetune.lora.r > 0 keeps the pretrained weights fixed)", self.backbone_lr_mult)
        return e


@dataclass
class RunConfig:
    model: ModelConfig
    data: DataConfig
    optimizer: OptimizerConfig
    scheduler: SchedulerConfig
    trainer: TrainerConfig
    imports: list = field(default_factory=list)
    logger: dict = field(default_factory=dict)  # logger name -> its arguments (metrics.jsonl always)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


def _registries() -> dict[str, Any]:
    # Imported here so that `ftool --help` and the CLI's first checks never import torch.
    from ftool import components

    return components.REGISTRIES


def import_user_modules(modules: list[str]) -> None:
    """Import the modules a config lists under `imports`, so their registrations become names.
    They are found on the Python path or in the current directory (as `python -m` would)."""
    if modules and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise FtoolError(f"imports: cannot import '{module}': {one_line(e)}") from None


# Config groups whose files set keys all over the config (optimizer, trainer, ...): `# @package _global_`
GLOBAL_GROUPS = ("experiment", "hparams_search")


def not_global(group: str, file: str) -> str:
    """The error for a file of such a group without its package line: Hydra puts its keys under `group.`."""
    return (f"{group}: {file} sets keys under '{group}.', not the config's own; its first line must be "
            f"'# @package _global_', as in ftool's configs/{group}/*.yaml")


_COMPONENTS = {
    "model": ModelConfig,
    "data": DataConfig,
    "optimizer": OptimizerConfig,
    "scheduler": SchedulerConfig,
}


def validate(cfg: DictConfig) -> RunConfig:
    """Check the whole composed config; return it typed, or raise every problem at once."""
    try:
        raw = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        raise FtoolError(f"config: {one_line(e)}") from None
    # `???` in a config file: a value only the user can give (a data folder, the run to fine-tune).
    errors = [f"{key}: needs a value; give {key}=... on the command line"
              for key in sorted(OmegaConf.missing_keys(cfg))]
    known = set(_COMPONENTS) | {"trainer", "imports", "logger", "finetune"}
    for key in raw:
        if key not in known:
            errors.append(f"{key}: unknown config key; top-level keys are {', '.join(sorted(known))}")
    imports = raw.get("imports") or []
    if not isinstance(imports, list) or not all(isinstance(m, str) for m in imports):
        errors.append(f"imports: must be a list of module names, got {imports!r}")
        imports = []
    import_user_modules(imports)
    registries = _registries()

    parts: dict[str, Any] = {}
    trainer = _settings(raw, "trainer", errors)
    if trainer is not None:
        parts["trainer"] = _typed(TrainerConfig, trainer, "trainer", errors)
    finetune = _settings(raw, "finetune", errors)
    if finetune is not None:
        if "from" in finetune:  # `from` is a Python keyword: the field is `source`
            finetune["source"] = finetune.pop("from")
        parts["finetune"] = _typed(FinetuneConfig, finetune, "finetune", errors)
    for key, schema in _COMPONENTS.items():
        node = _settings(raw, key, errors)
        if node is None:
            continue
        if "name" not in node:
            errors.append(f"{key}.name: missing; choose a {key} with {key}=<option>")
            continue
        common = {f.name for f in fields(schema)} - {"args"}
        args = {k: v for k, v in node.items() if k not in common}
        typed = _typed(schema, {k: v for k, v in node.items() if k in common}, key, errors)
        if typed is None:
            continue
        try:
            errors.extend(registries[key].check_args(typed.name, args))
        except FtoolError as e:
            errors.append(str(e))
            continue
        typed.args = args
        parts[key] = typed
    loggers = raw.get("logger") or {}
    if not isinstance(loggers, dict):
        errors.append(f"logger: expected logger names with their settings, got {loggers!r}")
        loggers = {}
    for name, args in loggers.items():
        try:
            errors.extend(registries["logger"].check_args(name, dict(args or {})))
        except FtoolError as e:
            errors.append(str(e))
    if errors:
        raise FtoolError("\n".join(errors))
    return RunConfig(imports=imports, logger=loggers, **parts)


def _kind(annotation) -> str:
    """A schema field's type in a user's words: `trainer.epochs: must be a whole number`."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1
    base = args[0] if optional else annotation
    base = typing.get_origin(base) or base  # list[str]: list
    return expected_type(getattr(base, "__name__", str(base)), optional)


def _field(schema: type, dotted: str, values: dict) -> tuple[Any, Any] | None:
    """(type, value given) of a schema's field, nested ones too (`augment.hflip`), or None."""
    annotation, value = schema, values
    for part in dotted.split("."):
        hints = typing.get_type_hints(annotation) if isinstance(annotation, type) and is_dataclass(annotation) else {}
        if part not in hints or not isinstance(value, dict) or part not in value:
            return None
        annotation, value = hints[part], value[part]
    return annotation, value


def _keys_there(schema: type, dotted: str, values: dict) -> list[str]:
    """The keys of the (nested) schema that `dotted` would be a key of, or [] where none is a dataclass."""
    parent = dotted.rpartition(".")[0]
    found = _field(schema, parent, values) if parent else (schema, values)
    there = found[0] if found else None
    return [f.name for f in fields(there) if f.name != "args"] if is_dataclass(there) else []


def _section_given_a_value(schema: type, values: dict, prefix: str = "") -> tuple[str, Any] | None:
    """(dotted key, value) of the first nested section given a plain value (`data.augment=5`), or None."""
    for name, hint in typing.get_type_hints(schema).items():
        if name in values and is_dataclass(hint):
            if not isinstance(values[name], dict):
                return prefix + name, values[name]
            found = _section_given_a_value(hint, values[name], f"{prefix}{name}.")
            if found:
                return found
    return None


def _settings(raw: dict, key: str, errors: list[str]) -> dict | None:
    """The settings under a top-level key (none: {}); anything but key: value pairs is an error (None)."""
    node = raw.get(key)
    if node is not None and not isinstance(node, dict):
        errors.append(f"{key}: expected {key} settings (key: value), got {node!r}")
        return None
    return dict(node or {})


def _typed(schema: type, values: dict, key: str, errors: list[str]) -> Any:
    """Merge values into the dataclass schema (types, unknown keys), then check its ranges."""
    try:
        obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))
    except OmegaConfBaseException as e:
        name = getattr(e, "full_key", None)
        given = _field(schema, name, values) if isinstance(e, ValidationError) and name else None
        section = None if name else _section_given_a_value(schema, values)
        known = _keys_there(schema, name, values) if isinstance(e, ConfigKeyError) and name else []
        if given:  # a value of the wrong type (OmegaConf's words are its own)
            errors.append(f"{key}.{name}: must be {_kind(given[0])}, got {given[1]!r}")
        elif section:  # OmegaConf names no key: "Merge error: int is not a subclass of AugmentConfig"
            errors.append(f"{key}.{section[0]}: must be {expected_type('dict')}, got {section[1]!r}")
        elif known:  # a key the schema lacks, added with + (+trainer.epoch=3): as without +
            parent, _, leaf = name.rpartition(".")
            errors.append(f"{key}.{name}: no such key; {key + '.' + parent if parent else key} has "
                          f"{', '.join(known)}.{close_matches_hint(leaf, known)}")
        else:
            errors.append(f"{key + '.' + name if name else key}: {one_line(e)}")
        return None
    problems = obj.problems()
    errors.extend(problems)
    return None if problems else obj
