"""Fine-tuning: load the layers of a pretrained ftool run that fit (or use the model's own pretrained
weights), start the rest fresh (a new head for new classes), freeze what the config says, give the
pretrained layers their own LR (and transformer layers a decaying one), or train LoRA adapters."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch
from torch import nn

from ftool.config import FinetuneConfig, LoraConfig
from ftool.data import check_same_splits, same_source
from ftool.engine import checkpoint
from ftool.engine.progress import console, warn
from ftool.errors import FtoolError, one_line
from ftool.rundir import (RunDir, is_main_process, locate_checkpoint, read_saved, read_summary, records_holding,
                           relative_paths_resolved)


def load_pretrained(model: nn.Module, source: str, data, class_names: list[str]) -> set[str]:
    """Copy the source checkpoint's tensors whose name and shape match, except the output layer's
    (the head is for the new data's classes: it starts fresh); returns the parameter names loaded.
    On the source's own data and classes (some of them), the split must be the source's."""
    run, path = _source(source)
    tensors = checkpoint.load_state_dict_file(path, "finetune.from")  # (a run's checkpoints are safetensors)
    if any(".lora_A." in name for name in tensors):
        if not run:
            raise FtoolError(f"finetune.from: {path} holds LoRA adapters, without the run whose config says how to "
                             f"merge them; give its run directory, or a file `ftool export` made of it (merged)")
        tensors = _merged_lora_weights(run, path)
    own, head = model.state_dict(), output_layer(model) + "."
    fits = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape and not k.startswith(head)}
    if not fits and not run and (path.parent / "config.json").is_file():  # an export's, or any model folder's
        raise FtoolError(f"finetune.from: {path} is a Hugging Face model folder's weights; start from the folder "
                         f"with model=hf_classifier model.name_or_path={path.parent}")
    if not fits:
        trained = ((read_saved(run) or {}).get("model") or {}).get("name") if run else None
        raise FtoolError(f"finetune.from: no layer of {path} fits this model "
                         + (f"(that run trained model={trained}; give the same model, with the same sizes)" if trained
                            else f"by name and shape (it has {_some(tensors)}; the model has {_some(own)}): was it "
                                 f"saved from this model, with the same sizes?"))
    if run:  # (a file of its own does not say what data it trained on)
        _check_held_out_unseen(run, data, class_names)
    model.load_state_dict(fits, strict=False)
    fresh = [k for k in own if k not in fits]
    if is_main_process():  # (every process loads them)
        console.print(f"finetune: {len(fits)} tensors from {path}; fresh: {', '.join(fresh) or 'none'}", soft_wrap=True)
    return {name for name, _ in model.named_parameters() if name in fits}


def _source(source: str) -> tuple[RunDir | None, Path]:
    """(the run, its checkpoint) that `finetune.from` names, or (None, the file) for a weights file of its
    own: an export, or a state_dict a training script of your own saved."""
    path = Path(source).expanduser()
    if path.is_file() and not records_holding(path):  # (a run's checkpoints/x: its run's)
        return None, path
    return locate_checkpoint(source, "finetune.from")


def _some(tensors: dict) -> str:
    names = list(tensors)
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _check_held_out_unseen(run: RunDir, data, class_names: list[str]) -> None:
    """Samples the source run trained on must not be in this run's validation or test split, where they
    would be scored as unseen: on the source's own data and classes (some of them), the split settings
    must be the source's (an error), and a split of other classes holds out other samples (a warning)."""
    source_classes = ((read_summary(run) or {}).get("data") or {}).get("class_names") or []
    shared = set(source_classes) & set(class_names)
    if source_classes and class_names and not shared:
        return  # digits 0-4, then 5-9: no sample of these classes was the source's
    check_same_splits(data, run, f"finetune.from {run.path} trained on this data, holding out samples with {{held}}; "
                                 f"other split settings put samples it trained on into this run's held-out ones, "
                                 f"scored as unseen; give the source's split settings")
    if sorted(source_classes) != sorted(class_names) and same_source(data, run):
        warn(f"finetune.from {run.path} trained on classes {', '.join(source_classes)} of this data; split with other "
             f"classes, this run holds out other samples of {', '.join(sorted(shared))}, some of them ones the source "
             f"trained on: its val and test figures for them flatter it")


def output_layer(model: nn.Module) -> str:
    """The name of the last submodule with parameters of its own: the head that `backbone` spares."""
    names = [name for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    return names[-1]


def _merged_lora_weights(run: RunDir, path: Path) -> dict[str, torch.Tensor]:
    """A LoRA run's weights with its adapters merged in, named as in the plain model: that run's model
    rebuilt from its saved config, loaded, and merged by peft (as `export` does)."""
    from omegaconf import OmegaConf

    from ftool.inference import load_trained

    saved = read_saved(run)
    if saved is None:
        raise FtoolError(f"finetune.from: {path} holds LoRA adapters, and its run's config, which says how to merge "
                         f"them, is missing ({run.path / '.hydra' / 'config.yaml'})")
    cfg = OmegaConf.create(saved)
    for key, resolved in relative_paths_resolved(run).items():
        OmegaConf.update(cfg, key, str(resolved))
    return merge_lora(load_trained(cfg, str(path)).model).state_dict()


def pretrained_parameters(model: nn.Module) -> set[str]:
    """The parameters that start pretrained, as `components.build_model` marked them (loaded from
    `finetune.from`, torchvision weights, a Hugging Face model); empty for a model trained from scratch."""
    return set(getattr(model, "pretrained_parameters", ()))


def lr_multipliers(model: nn.Module, pretrained: set[str], cfg: FinetuneConfig) -> dict[str, float]:
    """Each parameter's LR relative to optimizer.lr: backbone_lr_mult for the pretrained ones, times
    layer_lr_decay^(N + 1 - depth) where depth is the transformer layer's index + 1 (0 for the
    embeddings, N + 1 for what follows the last layer, such as the head)."""
    if cfg.backbone_lr_mult != 1.0 and not pretrained:
        raise FtoolError("finetune.backbone_lr_mult: nothing in this model is pretrained, so it would apply to no "
                         "parameter; give finetune.from=<run dir> or pretrained weights, or leave it at 1")
    names = [n for n, _ in model.named_parameters()]
    mult = {n: cfg.backbone_lr_mult if n in pretrained else 1.0 for n in names}
    if cfg.layer_lr_decay != 1.0:
        layer = {n: int(m.group(1)) for n in names if (m := re.search(r"\.(?:layer|layers|h|blocks)\.(\d+)\.", n))}
        if not layer:
            raise FtoolError("finetune.layer_lr_decay: this model has no numbered layers (encoder.layer.N) to decay over")
        top = max(layer.values()) + 2  # the depth above the last layer
        embeddings = {f"{module_name}.{name}" for module_name, module in model.named_modules()  # (GPT-2's wte, wpe)
                      if isinstance(module, nn.Embedding) for name, _ in module.named_parameters(recurse=False)}
        for n in names:
            depth = layer[n] + 1 if n in layer else (0 if "embed" in n or n in embeddings else top)
            mult[n] *= cfg.layer_lr_decay ** (top - depth)
    return mult


def apply_lora(model: nn.Module, cfg: LoraConfig) -> nn.Module:
    """Wrap a text model's transformer in peft LoRA adapters: only they and the head train."""
    from ftool.models.hf import HFClassifier

    if not isinstance(model, HFClassifier):
        raise FtoolError("finetune.lora: LoRA adapters are for transformers (model=hf_classifier)")
    try:
        from peft import LoraConfig as PeftLoraConfig
        from peft import TaskType, get_peft_model
    except ImportError:
        raise FtoolError("finetune.lora: LoRA needs peft: pip install 'ftool[text]'") from None
    modules = [name for name, _ in model.hf.named_modules()]
    missing = [t for t in cfg.target_modules or [] if not any(n == t or n.endswith(f".{t}") for n in modules)]
    if missing:  # (peft's "No modules were targeted ...", naming no layer it has)
        raise FtoolError(f"finetune.lora.target_modules: {', '.join(map(str, missing))}: no such layer in this model "
                         f"({model.hf.config.model_type}); its linear layers: {', '.join(_linear_layers(model))}")
    marked = pretrained_parameters(model)
    pretrained = {id(p) for n, p in model.named_parameters() if n in marked}
    try:
        # With pooling=mean the head sits outside the transformer (and trains as it is).
        task = TaskType.SEQ_CLS if model.head is None else TaskType.FEATURE_EXTRACTION
        with warnings.catch_warnings():  # peft reads a transformers attribute deprecated in transformers 5
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
            model.hf = get_peft_model(model.hf, PeftLoraConfig(
                task_type=task, r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                target_modules=list(cfg.target_modules) if cfg.target_modules else None))
    except ValueError as e:
        if cfg.target_modules is None and "target_modules" in str(e):  # peft knows no layers for this architecture
            raise FtoolError(f"finetune.lora.target_modules: peft has no default for this model "
                             f"({model.hf.config.model_type}); name the layers to adapt, usually the attention's "
                             f"query and value, among its linear layers: {', '.join(_linear_layers(model))}") from None
        raise FtoolError(f"finetune.lora: {one_line(e)}") from None
    # peft renames the parameters it wraps (and froze them): mark the same tensors by their new names
    model.pretrained_parameters = {n for n, p in model.named_parameters() if id(p) in pretrained}
    return model


def _linear_layers(model: nn.Module) -> list[str]:
    """The names LoRA can adapt in a transformer (`query`, `value`, ...), its classification head's aside."""
    from ftool.models.hf import HEAD_NAMES

    return sorted({name.rpartition(".")[2] for name, module in model.hf.named_modules()
                   if isinstance(module, nn.Linear)} - set(HEAD_NAMES))


def merge_lora(model: nn.Module) -> nn.Module:
    """The plain transformer with the adapters added into its weights (for export)."""
    if hasattr(model, "hf") and hasattr(model.hf, "merge_and_unload"):
        model.hf = model.hf.merge_and_unload()
    return model


def freeze(model: nn.Module, cfg: FinetuneConfig, pretrained: set[str]) -> list[str]:
    """Stop gradients for the layers `finetune.freeze` names; returns the frozen parameter names.
    `backbone` is the pretrained layers. Freezing a model with nothing pretrained is an error: its
    frozen layers would keep their random initial weights (`ftool train experiment=digits_transfer`
    without finetune.from)."""
    if cfg.freeze == "none":
        if cfg.unfreeze_at_epoch:
            raise FtoolError("finetune.unfreeze_at_epoch: nothing is frozen to unfreeze; set finetune.freeze "
                             "(backbone, or module names) too")
        return []
    if not pretrained:
        raise FtoolError("finetune.freeze: nothing in this model is pretrained, so frozen layers would keep their "
                         "random initial weights; give finetune.from=<run dir> or pretrained weights, "
                         "or finetune.freeze=none")
    if cfg.freeze == "backbone":
        frozen = [n for n, _ in model.named_parameters() if n in pretrained]
    else:
        prefixes = [str(p) for p in cfg.freeze]
        frozen = [n for n, _ in model.named_parameters() if any(n == p or n.startswith(p + ".") for p in prefixes)]
        if not frozen:
            raise FtoolError(f"finetune.freeze: {prefixes} match no parameter; the model's blocks are "
                             f"{', '.join(_blocks(model))}")
    set_trainable(model, frozen, False)
    return frozen


def _blocks(model: nn.Module) -> list[str]:
    """The model's blocks, below the wrappers that hold one each (a Hugging Face classifier is `hf`
    around `hf.bert` and `hf.classifier`, and `hf` alone says nothing)."""
    names = [n.split(".") for n, _ in model.named_parameters()]
    for depth in range(1, max(map(len, names)) + 1):
        level = sorted({".".join(n[:depth]) for n in names})
        if len(level) > 1:
            break
    return level


def set_trainable(model: nn.Module, names: list[str], trainable: bool) -> None:
    """Let the named parameters train (or stop them): freezing, and finetune.unfreeze_at_epoch."""
    params = dict(model.named_parameters())
    for name in names:
        params[name].requires_grad_(trainable)
