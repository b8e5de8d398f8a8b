"""The one-line answer to a key the config does not have, with the likeliest key meant."""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from ftool.registry import close_matches_hint

# What users of Lightning, Hugging Face's Trainer and torchtune type (the key's last part), and
# ftool's setting for it (None: there is none).
OTHER_TOOLS_NAMES = {
    **dict.fromkeys(("max_epochs", "num_train_epochs", "num_epochs", "n_epochs"), "trainer.epochs"),
    "learning_rate": "optimizer.lr",
    "seed": "trainer.seed",  # (data=regression has a seed too: the data's)
    **dict.fromkeys(("per_device_train_batch_size", "train_batch_size"), "data.batch_size"),
    "per_device_eval_batch_size": "data.eval_batch_size",
    "gradient_accumulation_steps": "trainer.accumulate_grad_batches",
    **dict.fromkeys(("max_grad_norm", "gradient_clip_val", "clip_grad_norm"), "trainer.grad_clip"),
    **dict.fromkeys(("gpus", "num_gpus", "nproc_per_node", "num_devices"), "trainer.devices"),
    "fp16": "trainer.precision=fp16-mixed",
    "bf16": "trainer.precision=bf16-mixed",
    **dict.fromkeys(("amp", "mixed_precision", "dtype"), "trainer.precision"),
    **dict.fromkeys(("output_dir", "default_root_dir"), "hydra.run.dir"),
    **dict.fromkeys(("ckpt_path", "resume_from_checkpoint"), "trainer.resume"),
    **dict.fromkeys(("ckpt", "init_from"), "finetune.from"),  # (eval's ckpt= given to train: a run to start from)
    **dict.fromkeys(("fast_dev_run", "limit_train_batches"), "trainer.max_steps"),
    **dict.fromkeys(("check_val_every_n_epoch", "val_check_interval", "eval_steps"), "trainer.val_every"),
    "enable_progress_bar": "trainer.progress",
    "logging_steps": "trainer.log_every_n_steps",
    "save_steps": "trainer.checkpoint_every_n_steps",
    "metric_for_best_model": "trainer.monitor",
    "greater_is_better": "trainer.mode",
    "label_smoothing_factor": "trainer.label_smoothing",
    **dict.fromkeys(("class_weight", "pos_weight", "loss_weights"), "trainer.class_weights"),  # Keras', scikit-learn's
    "torch_compile": "trainer.compile",
    "ddp_find_unused_parameters": "trainer.find_unused_parameters",
    "report_to": "logger=<name>",
    **dict.fromkeys(("max_seq_length", "max_seq_len", "max_len"), "data.max_length"),
    **dict.fromkeys(("lora_r", "lora_rank"), "finetune.lora.r"),
    "lora_alpha": "finetune.lora.alpha",
    "lora_dropout": "finetune.lora.dropout",
    "lora_attn_modules": "finetune.lora.target_modules",
    # ... and settings ftool has no counterpart of (None), where the closest name would mislead
    **dict.fromkeys(("num_sanity_val_steps", "limit_val_batches"), None),
    "gradient_checkpointing": "model.gradient_checkpointing",
    **dict.fromkeys(("patience", "early_stopping"), "trainer.early_stopping_patience"),
    "dataloader_num_workers": "data.num_workers",
    **dict.fromkeys(("warmup_steps", "warmup_ratio", "num_warmup_steps"), "scheduler.warmup_epochs"),
    **dict.fromkeys(("lr_scheduler_type", "lr_scheduler"), "scheduler=<name>"),
    "optim": "optimizer=<name>",
    **dict.fromkeys(("model_name_or_path", "pretrained_model_name_or_path"), "model.name_or_path"),
    **dict.fromkeys(("num_classes", "num_labels"), "data.classes"),  # the head follows the data's classes
}

_ABSENT = object()  # (a key set to null is there)


def unknown_key(key: str, cfg: DictConfig, config_dirs: list[Path], options: tuple = (), command: str = "") -> str:
    """'trainer.epoch: no such key; trainer has epochs, ... Did you mean 'epochs'?'
    `cfg`: the config composed with the group choices only; `options`: the command's own (eval's ckpt=)."""
    parts = key.split(".")
    for depth in range(1, len(parts)):  # modle.hidden: the missing part is modle
        above = OmegaConf.select(cfg, ".".join(parts[:depth]), default=_ABSENT)
        if above is _ABSENT:
            key = ".".join(parts[:depth])
            break
        if not isinstance(above, DictConfig):
            return f"{key}: no such key; {'.'.join(parts[:depth])} is a value, not a group of settings"
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    keys = [str(k) for k in node.keys() if parent or k != "hydra"]
    hint = _meant(parent, leaf, keys, cfg, config_dirs)
    if options and not parent:  # eval's ckpt_name=... was meant as one of its own options
        hint += f" {command} takes {', '.join(f'{o}=' for o in options)}."
        hint += close_matches_hint(leaf, list(options))
    return f"{key}: no such key; {parent or 'the config'} has {', '.join(keys)}.{hint}"


def _meant(parent: str, leaf: str, keys: list[str], cfg: DictConfig, config_dirs: list[Path]) -> str:
    if leaf in OTHER_TOOLS_NAMES and OTHER_TOOLS_NAMES[leaf] != f"{parent}.{leaf}":  # (model.<it> with another model)
        meant = OTHER_TOOLS_NAMES[leaf]
        return f" Did you mean '{meant}'?" if meant else " ftool has no such setting."
    if parent == "data" and leaf in _loader_keys(config_dirs):  # a data config of one's own, without them
        return (f" Every dataset's config has the loader settings ({leaf} among them) through its first line "
                f"`defaults: [/data_loader@_here_, _self_]`, as ftool's own do: add it to data={cfg.data.name}'s.")
    if parent == "model" and leaf == "init":  # (every model takes it: a model config of one's own without it)
        return f" Every model takes it: add `init: default` to model={cfg.model.name}'s config to set it here."
    # A key another group has (epochs=3, trainer.lr=0.1) was meant for that group.
    elsewhere = [f"{g}.{leaf}" for g, node in cfg.items()
                 if g not in (parent, "hydra") and isinstance(node, DictConfig) and leaf in node]
    if elsewhere:
        return f" Did you mean '{elsewhere[0]}'?"
    keys_of = _option_keys(parent, config_dirs) if parent else {}  # optimizer.momentum with adam: sgd's
    having = [option for option, option_keys in keys_of.items() if leaf in option_keys]
    if having:
        return _setting_of(parent, having)
    others = sorted({k for option_keys in keys_of.values() for k in option_keys} - set(keys))
    meant = difflib.get_close_matches(leaf, keys + others, n=1, cutoff=0.5)  # the closest, here or there
    if not meant:
        return ""
    where = "" if meant[0] in keys else _setting_of(parent, [o for o, ks in keys_of.items() if meant[0] in ks])
    return f" Did you mean '{meant[0]}'?{where}"


def _setting_of(group: str, options: list[str]) -> str:
    listed = ", ".join(options[:-1]) + f" or {options[-1]}" if len(options) > 1 else options[0]
    return f" It is a setting of {group}={listed}."


def _loader_keys(config_dirs: list[Path]) -> set[str]:
    """The loader settings every dataset shares (data_loader.yaml, which data configs pull in)."""
    return {str(k) for root in config_dirs if (root / "data_loader.yaml").is_file()
            for k in yaml.safe_load((root / "data_loader.yaml").read_text(encoding="utf-8"))}


def _option_keys(group: str, config_dirs: list[Path]) -> dict[str, set[str]]:
    """Each option of a config group (its file in any config folder) -> the keys it sets."""
    keys_of: dict[str, set[str]] = {}
    for path in sorted(p for root in config_dirs for p in (root / group).glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        try:
            settings = yaml.safe_load(text) or {}
        except yaml.YAMLError:  # a user's file that does not parse is not the answer
            continue
        if "@package _global_" in text:  # model/hf_classifier.yaml sets model: {...} and more
            settings = settings.get(group) or {}
        if isinstance(settings, dict):
            keys_of.setdefault(path.stem, set()).update(map(str, settings))
    return keys_of
