"""Fine-tuning, on a built model: load the pretrained tensors that fit (a head of another size starts
fresh), freeze what `finetune.freeze` names, give the pretrained layers their own LR (and transformer
layers a decaying one), or train LoRA adapters (peft) instead of the pretrained weights."""

from __future__ import annotations

import re
import warnings

import torch
from torch import nn

from ftool.config import FinetuneConfig, LoraConfig
from ftool.errors import ConfigError


def pretrained_parameters(model: nn.Module) -> set[str]:
    """The parameters that start pretrained, as the builder or `load_matching` marked them."""
    return set(getattr(model, "pretrained_parameters", ()))


def output_layer(model: nn.Module) -> str:
    """The name of the last submodule with parameters of its own: the head."""
    return [name for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))][-1]


def load_matching(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> set[str]:
    """Copy the tensors whose name and shape match, except the head's (it is for the new data's classes);
    returns the parameter names loaded."""
    own, head = model.state_dict(), output_layer(model) + "."
    fits = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape and not k.startswith(head)}
    if not fits:
        raise ConfigError(f"finetune.from: no tensor of {source} fits this model by name and shape; was it saved "
                          f"from this model, with the same sizes?")
    model.load_state_dict(fits, strict=False)
    from ftool.engine.progress import note

    note(f"finetune: {len(fits)} tensors from {source}; fresh: {', '.join(k for k in own if k not in fits) or 'none'}")
    return {name for name, _ in model.named_parameters() if name in fits}


def lr_multipliers(model: nn.Module, pretrained: set[str], cfg: FinetuneConfig) -> dict[str, float]:
    """Each parameter's LR relative to optimizer.lr: backbone_lr_mult for the pretrained ones, times
    layer_lr_decay^(N + 1 - depth), depth being a transformer layer's index + 1 (0 for the embeddings,
    N + 1 for what follows the last layer, such as the head)."""
    names = [n for n, _ in model.named_parameters()]
    mult = {n: cfg.backbone_lr_mult if n in pretrained else 1.0 for n in names}
    if cfg.layer_lr_decay != 1.0:
        layer = {n: int(m.group(1)) for n in names if (m := re.search(r"\.(?:layer|layers|h|blocks)\.(\d+)\.", n))}
        top = max(layer.values(), default=-1) + 2
        embeddings = {f"{module_name}.{name}" for module_name, module in model.named_modules()
                      if isinstance(module, nn.Embedding) for name, _ in module.named_parameters(recurse=False)}
        for n in names:
            depth = layer[n] + 1 if n in layer else (0 if "embed" in n or n in embeddings else top)
            mult[n] *= cfg.layer_lr_decay ** (top - depth)
    return mult


def apply_lora(model: nn.Module, cfg: LoraConfig) -> nn.Module:
    """Wrap a text model's transformer (`model.hf`) in peft LoRA adapters: only they and the head train."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType, get_peft_model

    marked = pretrained_parameters(model)
    pretrained = {id(p) for n, p in model.named_parameters() if n in marked}
    task = TaskType.SEQ_CLS if model.head is None else TaskType.FEATURE_EXTRACTION  # (mean pooling's head: outside)
    with warnings.catch_warnings():  # peft reads a transformers attribute deprecated in transformers 5
        warnings.simplefilter("ignore", FutureWarning)
        model.hf = get_peft_model(model.hf, PeftLoraConfig(
            task_type=task, r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
            target_modules=list(cfg.target_modules) if cfg.target_modules else None))
    # peft renames the parameters it wraps: mark the same tensors by their new names
    model.pretrained_parameters = {n for n, p in model.named_parameters() if id(p) in pretrained}
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """The plain transformer with the adapters added into its weights (export, finetune.from)."""
    if hasattr(getattr(model, "hf", None), "merge_and_unload"):
        model.hf = model.hf.merge_and_unload()
    return model


def freeze(model: nn.Module, cfg: FinetuneConfig, pretrained: set[str]) -> list[str]:
    """Stop gradients for the layers `finetune.freeze` names (`backbone`: the pretrained ones); returns
    the frozen parameter names. Frozen layers of a model with nothing pretrained would keep their random
    initial weights: an error."""
    if cfg.freeze == "none":
        return []
    if not pretrained:
        raise ConfigError("finetune.freeze: nothing in this model is pretrained, so frozen layers would keep their "
                          "random weights; give finetune.from=<run dir> or pretrained weights")
    prefixes = [str(p) for p in cfg.freeze] if cfg.freeze != "backbone" else []
    frozen = [n for n, _ in model.named_parameters()
              if (n in pretrained if cfg.freeze == "backbone" else any(n == p or n.startswith(p + ".") for p in prefixes))]
    if not frozen:
        blocks = sorted({n.split(".")[0] for n, _ in model.named_parameters()})
        raise ConfigError(f"finetune.freeze: {prefixes} match no parameter; the model's blocks: {', '.join(blocks)}")
    set_trainable(model, frozen, False)
    return frozen


def set_trainable(model: nn.Module, names: list[str], trainable: bool) -> None:
    params = dict(model.named_parameters())
    for name in names:
        params[name].requires_grad_(trainable)
