"""The validation layer: typed schemas of the composed config, and every check of the documented
contract, run once before anything is built.

Each component node (model, data, optimizer, scheduler) holds `name`, the settings every builder of
its kind shares (the dataclasses below), and the chosen builder's own keyword arguments, which the
registry checks against its signature. A field's range or choices sit in its metadata (`setting`).
`validate` collects every problem at once; `check_with_data` and `check_reuse` are the few checks
that need the data or the run being reused.
"""

from __future__ import annotations

import dataclasses
import importlib
import operator
import os
import sys
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from ftool.errors import ConfigError, FtoolError, one_line
from ftool.registry import LOSSES, REGISTRIES, close_match


def setting(default=None, *, ge=None, gt=None, lt=None, le=None, choices=None):
    """A schema field with its contract: bounds and choices, checked by `_problems`."""
    meta = {k: v for k, v in dict(ge=ge, gt=gt, lt=lt, le=le, choices=choices).items() if v is not None}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainerConfig:
    epochs: int = setting(20, ge=0)
    max_steps: int = setting(-1, ge=-1)  # > 0 stops after this many optimizer steps
    validate: bool = True
    val_every: int = setting(1, ge=1)
    test: bool = True
    seed: int = setting(0, ge=0, lt=2**32)
    deterministic: bool = False
    progress: bool = True
    log_every_n_steps: int = setting(20, ge=1)
    monitor: Optional[str] = None  # default: val/accuracy (classification), val/loss (regression)
    mode: Optional[str] = setting(None, choices=("max", "min"))
    loss: Any = "auto"  # auto | cross_entropy | mse | l1 | huber | a loss of one's own (LOSSES) | {_target_: ...}
    metrics: Optional[list] = None  # names in ftool.metrics (METRICS); null: the task's usual ones
    label_smoothing: float = setting(0.0, ge=0, lt=1)
    class_weights: Any = None  # null | balanced | [a weight per class]
    accelerator: str = setting("auto", choices=("auto", "cpu", "cuda", "mps"))
    devices: int = setting(1, ge=1)
    strategy: str = setting("ddp", choices=("ddp", "fsdp"))
    find_unused_parameters: bool = False
    precision: str = setting("32", choices=("32", "bf16-mixed", "fp16-mixed", "auto"))
    compile: Any = setting(False, choices=(False, True, "strict"))
    compile_mode: str = setting("default", choices=("default", "reduce-overhead", "max-autotune"))
    channels_last: bool = False
    accumulate_grad_batches: int = setting(1, ge=1)
    grad_clip: float = setting(0.0, ge=0)
    grad_clip_algorithm: str = setting("norm", choices=("norm", "value"))
    ema_decay: float = setting(0.0, ge=0, lt=1)
    on_nonfinite: str = setting("stop", choices=("stop", "skip"))
    early_stopping_patience: int = setting(0, ge=0)
    early_stopping_min_delta: float = setting(0.0, ge=0)
    checkpoint_every_n_steps: int = setting(0, ge=0)
    save_every_n_epochs: int = setting(0, ge=0)
    save_top_k: int = setting(1, ge=1)  # > 1: also keep the N best as epoch=E-<metric>=<value>.safetensors
    limit_train_batches: int = setting(0, ge=0)  # > 0: at most this many batches an epoch (debug=limit, fast)
    limit_val_batches: int = setting(0, ge=0)
    limit_test_batches: int = setting(0, ge=0)
    overfit_batches: int = setting(0, ge=0)  # > 0: train and validate on these first train batches (debug=overfit)
    resume: Optional[str] = None  # auto | a run dir or checkpoint


@dataclass
class AugmentConfig:
    crop_padding: int = setting(0, ge=0)
    hflip: bool = False
    rotation: float = setting(0.0, ge=0, le=180)


@dataclass
class DataConfig:
    name: str = "digits"
    batch_size: int = setting(64, ge=1)
    eval_batch_size: Optional[int] = setting(None, ge=1)
    loader: str = setting("auto", choices=("auto", "tensor", "dataloader"))
    num_workers: int = setting(0, ge=0)
    pin_memory: bool = False
    persistent_workers: bool = False
    val_fraction: float = setting(0.1, ge=0, lt=1)
    test_fraction: float = setting(0.2, gt=0, lt=1)
    test_size: Optional[int] = setting(None, ge=0)
    folds: int = setting(0, ge=0)
    fold: int = setting(0, ge=0)
    group_by_length: bool = False
    split_seed: int = setting(0, ge=0, lt=2**32)
    normalize: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    classes: Optional[list] = None
    args: dict = field(default_factory=dict)


@dataclass
class ModelConfig:
    name: str = "simplecnn"
    init: str = setting("default", choices=("default", "kaiming", "xavier"))
    args: dict = field(default_factory=dict)


@dataclass
class OptimizerConfig:
    name: str = "adam"
    lr: float = setting(1e-3, gt=0)
    weight_decay: float = setting(0.0, ge=0)
    l1: float = setting(0.0, ge=0)
    args: dict = field(default_factory=dict)


@dataclass
class SchedulerConfig:
    name: str = "none"
    warmup_epochs: float = setting(0.0, ge=0)
    args: dict = field(default_factory=dict)


@dataclass
class LoraConfig:
    r: int = setting(0, ge=0)  # > 0: LoRA adapters of this rank; the pretrained weights stay frozen
    alpha: float = setting(16.0, gt=0)
    dropout: float = setting(0.0, ge=0, lt=1)
    target_modules: Optional[list] = None


@dataclass
class FinetuneConfig:
    source: Optional[str] = None  # `finetune.from`: a run dir, checkpoint or weights file
    freeze: Any = "none"  # none | backbone | [module name prefixes]
    unfreeze_at_epoch: int = setting(0, ge=0)
    backbone_lr_mult: float = setting(1.0, gt=0)
    layer_lr_decay: float = setting(1.0, gt=0, le=1)
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class RunConfig:
    model: ModelConfig
    data: DataConfig
    optimizer: OptimizerConfig
    scheduler: SchedulerConfig
    trainer: TrainerConfig
    finetune: FinetuneConfig
    imports: list = field(default_factory=list)
    logger: dict = field(default_factory=dict)  # logger name -> its arguments
    callbacks: dict = field(default_factory=dict)  # callback name (or any name with a _target_) -> its arguments
    raw: dict = field(default_factory=dict, repr=False)  # the config as given, paths made absolute: the run record's


_COMPONENTS = {"model": ModelConfig, "data": DataConfig, "optimizer": OptimizerConfig, "scheduler": SchedulerConfig}
_SECTIONS = {"trainer": TrainerConfig, "finetune": FinetuneConfig}
TOP_LEVEL = (*_COMPONENTS, *_SECTIONS, "imports", "logger", "callbacks")
SPLIT_SETTINGS = ("split_seed", "val_fraction", "test_fraction", "test_size", "folds", "fold")


def validate(cfg: DictConfig | dict) -> RunConfig:
    """Check the whole composed config; return it typed, or raise every problem at once."""
    import ftool.callbacks  # noqa: F401
    import ftool.data  # noqa: F401  (these register the built-in components: imported here, where they are
    import ftool.engine.loggers  # noqa: F401  needed, as they import torch and the CLI's help needs none)
    import ftool.models  # noqa: F401
    import ftool.optim  # noqa: F401

    try:
        raw = OmegaConf.to_container(cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg), resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"config: {one_line(e)}") from None
    errors = [f"{key}: needs a value; give {key}=..." for key in _missing(raw)]
    errors += [f"{key}: unknown config key; top-level keys are {', '.join(TOP_LEVEL)}.{close_match(key, TOP_LEVEL)}"
               for key in raw if key not in TOP_LEVEL]
    import_user_modules(raw.get("imports") or [])
    finetune = dict(raw.get("finetune") or {})
    if "from" in finetune:  # `from` is a Python keyword: the field is `source`
        finetune["source"] = finetune.pop("from")
    parts = {"trainer": _typed(TrainerConfig, raw.get("trainer"), "trainer", errors),
             "finetune": _typed(FinetuneConfig, finetune, "finetune", errors)}
    for key, schema in _COMPONENTS.items():
        node = raw.get(key) or {}
        if isinstance(node, dict) and "_target_" in node:  # Hydra's way of naming a callable: as `name`
            node = {**{k: v for k, v in node.items() if k not in ("_target_", "name")}, "name": node["_target_"]}
        if not isinstance(node, dict) or "name" not in node:
            errors.append(f"{key}: choose one with {key}=<option>, got {node!r}")
            continue
        common = {f.name for f in fields(schema)} - {"args"}
        typed = _typed(schema, {k: v for k, v in node.items() if k in common}, key, errors)
        if typed is not None:
            try:
                found, typed.args = REGISTRIES[key].check_args(
                    typed.name, {k: v for k, v in node.items() if k not in common and v != "???"})
                errors += found
                raw[key] = {**raw[key], **typed.args}
            except FtoolError as e:
                errors.append(str(e))
        parts[key] = typed
    errors += _plugin_problems(raw, parts["trainer"])
    if not errors:
        errors += _cross_checks(RunConfig(**parts))
    if errors:
        raise ConfigError("\n".join(dict.fromkeys(errors)))
    return RunConfig(**parts, imports=raw.get("imports") or [], logger=raw.get("logger") or {},
                     callbacks=raw.get("callbacks") or {}, raw=raw)


def _plugin_problems(raw: dict, trainer: TrainerConfig | None) -> list[str]:
    """The arguments of each logger and callback (by name or `_target_`) and of a `_target_` loss."""
    given = [(REGISTRIES[section], name, dict(args or {})) for section in ("logger", "callbacks")
             for name, args in (raw.get(section) or {}).items()]
    if trainer is not None and isinstance(trainer.loss, dict):
        given.append((LOSSES, None, dict(trainer.loss)))
    errors = []
    for registry, name, args in given:
        try:
            errors += registry.check_args(str(args.pop("_target_", name)), args)[0]
        except FtoolError as e:
            errors.append(str(e))
    return errors


def _missing(node, prefix: str = "") -> list[str]:
    """The keys given as ??? (a value only the user can give)."""
    if isinstance(node, dict):
        return [k for key, value in node.items() for k in _missing(value, f"{prefix}{key}.")]
    return [prefix[:-1]] if node == "???" else []


def _typed(schema: type, values, key: str, errors: list[str]):
    """The dataclass of `values` (types and unknown keys by OmegaConf), then its ranges; None on a problem."""
    if values is not None and not isinstance(values, dict):
        errors.append(f"{key}: expected {key} settings (key: value), got {values!r}")
        return None
    try:
        obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values or {}))
    except OmegaConfBaseException as e:
        name = getattr(e, "full_key", "") or ""
        parent = name.rpartition(".")[0]
        keys = [f.name for f in fields(_schema_at(schema, parent))] if _schema_at(schema, parent) else []
        hint = close_match(name.rpartition(".")[2], keys) if isinstance(e, ConfigKeyError) else ""
        errors.append(f"{key}{'.' + name if name else ''}: {str(e).splitlines()[0]}.{hint}")
        return None
    errors += _problems(obj, key)
    return obj


def _schema_at(schema: type, dotted: str):
    """The dataclass of a nested section (`augment` of DataConfig), or None."""
    for part in filter(None, dotted.split(".")):
        schema = typing.get_type_hints(schema).get(part)
        if not dataclasses.is_dataclass(schema):
            return None
    return schema


_BOUNDS = {"ge": (">=", operator.ge), "gt": (">", operator.gt), "lt": ("<", operator.lt), "le": ("<=", operator.le)}


def _problems(obj, prefix: str) -> list[str]:
    """Each field's bounds and choices, as its `setting` metadata gives them; nested sections too."""
    errors = []
    for f in fields(obj):
        value, meta, name = getattr(obj, f.name), f.metadata, f"{prefix}.{f.name}"
        if dataclasses.is_dataclass(value):
            errors += _problems(value, name)
        elif "choices" in meta and value is not None and value not in meta["choices"]:
            listed = ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in meta["choices"])
            errors.append(f"{name}: must be {listed}; got {value!r}.{close_match(value, meta['choices'])}")
        elif value is not None:
            broken = [f"{word} {meta[op]}" for op, (word, ok) in _BOUNDS.items() if op in meta and not ok(value, meta[op])]
            errors += [f"{name}: must be {' and '.join(broken)}, got {value!r}"] if broken else []
    return errors


def _cross_checks(rc: RunConfig) -> list[str]:
    """Settings that contradict each other, and would be ignored or run wrong without a word."""
    t, f, errors = rc.trainer, rc.finetune, []
    weights = t.class_weights
    if weights not in (None, "balanced") and not (isinstance(weights, list) and weights and all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0 for w in weights)):
        errors.append(f"trainer.class_weights: must be balanced, a list of weights > 0 or null, got {weights!r}")
    if not isinstance(t.loss, dict) and t.loss not in ("auto", "cross_entropy", "mse", "l1", "huber", *LOSSES.names()):
        errors.append(f"trainer.loss: no loss '{t.loss}'; auto, cross_entropy, mse, l1, huber or one registered in "
                      f"LOSSES.{close_match(t.loss, ['cross_entropy', 'mse', 'huber', *LOSSES.names()])}")
    if t.epochs == 0 and t.max_steps <= 0:
        errors.append("trainer.epochs: must be > 0 unless trainer.max_steps is set")
    if not t.validate and (t.early_stopping_patience or t.monitor or rc.scheduler.name == "plateau"):
        errors.append("trainer.validate=false: early stopping, trainer.monitor and scheduler=plateau need validation")
    if rc.data.folds and not rc.data.fold < rc.data.folds or rc.data.fold and not rc.data.folds:
        errors.append(f"data.fold: must be in [0, data.folds) with data.folds >= 2, got fold {rc.data.fold} of "
                      f"{rc.data.folds}")
    if f.freeze not in ("none", "backbone") and not isinstance(f.freeze, list):
        errors.append(f"finetune.freeze: must be none, backbone or a list of module name prefixes, got {f.freeze!r}")
    if f.lora.r and (f.freeze != "none" or f.backbone_lr_mult != 1):
        errors.append("finetune.lora.r: LoRA keeps the pretrained weights frozen; leave finetune.freeze=none and "
                      "finetune.backbone_lr_mult=1")
    if f.unfreeze_at_epoch and (f.freeze == "none" or t.devices > 1):  # (DDP fixes what trains when it wraps)
        errors.append("finetune.unfreeze_at_epoch: needs finetune.freeze (something to unfreeze) and one process")
    if rc.scheduler.warmup_epochs and "optimizer" in REGISTRIES["scheduler"].parameters(rc.scheduler.name):
        errors.append(f"scheduler.warmup_epochs: {rc.scheduler.name} schedules the LR itself; leave it 0")
    if rc.data.batch_size % t.devices:
        errors.append(f"data.batch_size: {rc.data.batch_size} does not split evenly across {t.devices} processes")
    return errors


def check_with_data(rc: RunConfig, info, has_val: bool) -> str:
    """The checks that need the data (its task and classes); returns the monitored metric."""
    from ftool.metrics import REGRESSION_LOSSES, default_monitor, known_metrics, metric_names

    known = known_metrics(info)
    errors = [f"trainer.metrics: no metric '{m}' for {info.task} data; built in: {', '.join(known[:14])}, ... "
              f"or one registered in METRICS.{close_match(m, known)}" for m in rc.trainer.metrics or () if m not in known]
    logged = [f"val/{m}" for m in metric_names(info, rc.trainer.metrics)]
    monitor = rc.trainer.monitor or default_monitor(info)
    if monitor not in logged and not errors:
        errors.append(f"trainer.monitor: '{monitor}' is never logged; choose one of {', '.join(logged)}."
                      f"{close_match(monitor, logged)}")
    fits = REGRESSION_LOSSES if info.task == "regression" else ("cross_entropy",)
    if rc.trainer.loss in ("cross_entropy", *REGRESSION_LOSSES) and rc.trainer.loss not in fits:
        errors.append(f"trainer.loss: {rc.trainer.loss} does not fit {info.task} data; use {', '.join(fits)} or auto")
    weights = rc.trainer.class_weights
    if isinstance(weights, list) and len(weights) != info.num_outputs:
        errors.append(f"trainer.class_weights: {len(weights)} weights for {info.num_outputs} classes")
    if not has_val and (rc.trainer.early_stopping_patience or rc.scheduler.name == "plateau"):
        errors.append("data.val_fraction: early stopping and scheduler=plateau need a validation split")
    if errors:
        raise ConfigError("\n".join(errors))
    return monitor


def check_reuse(then: dict, rc: RunConfig, what: str, keys: tuple[str, ...]) -> None:
    """A reused run's settings that `what` (eval of a split, a resume) may not change: its samples would be
    scored or trained as they were not (`then`: the run's config)."""
    now = rc.raw
    changed = [k for k in keys if _at(now, k) != _at(then, k)]
    if changed:
        raise ConfigError(f"{what} keeps the run's {', '.join(f'{k}={_at(then, k)}' for k in changed)} (given "
                          f"{', '.join(f'{k}={_at(now, k)}' for k in changed)}); a new run may change them")


def _at(config: dict, dotted: str):
    for part in dotted.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def import_user_modules(modules: list[str]) -> None:
    """Import the modules a config lists under `imports`, so their registrations become names: found on
    the Python path or in the current directory (as `python -m` finds them)."""
    if not isinstance(modules, list):
        raise ConfigError(f"imports: must be a list of module names, got {modules!r}")
    if modules and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    for module in modules:
        importlib.import_module(module)
