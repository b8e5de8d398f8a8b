"""Fine-tuning from a pretrained ftool run: load the layers that fit, start the rest fresh (a new
head for new classes), freeze what the config says, give the pretrained layers their own LR."""

from __future__ import annotations

from torch import nn

from ftool.config import FinetuneConfig
from ftool.engine import checkpoint
from ftool.engine.progress import console
from ftool.errors import FtoolError
from ftool.rundir import locate_checkpoint


def load_pretrained(model: nn.Module, source: str) -> set[str]:
    """Copy the source checkpoint's tensors whose name and shape match, except the output layer's
    (the head is for the new data's classes: it starts fresh); returns the parameter names loaded."""
    _, path = locate_checkpoint(source, "finetune.from")
    tensors, _ = checkpoint.load_weights(path)
    own, head = model.state_dict(), output_layer(model) + "."
    fits = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape and not k.startswith(head)}
    if not fits:
        raise FtoolError(f"finetune.from: no layer of {path} fits this model (is it the same architecture?)")
    model.load_state_dict(fits, strict=False)
    fresh = [k for k in own if k not in fits]
    console.print(f"finetune: {len(fits)} tensors from {path}; fresh: {', '.join(fresh) or 'none'}", soft_wrap=True)
    return {name for name, _ in model.named_parameters() if name in fits}


def output_layer(model: nn.Module) -> str:
    """The name of the last submodule with parameters of its own: the head that `backbone` spares."""
    names = [name for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    return names[-1]


def freeze(model: nn.Module, cfg: FinetuneConfig) -> list[str]:
    """Stop gradients for the layers `finetune.freeze` names; returns the frozen parameter names."""
    if cfg.freeze == "none":
        return []
    if cfg.freeze == "backbone":
        head = output_layer(model) + "."
        frozen = [n for n, _ in model.named_parameters() if not n.startswith(head)]
    else:
        prefixes = [str(p) for p in cfg.freeze]
        frozen = [n for n, _ in model.named_parameters() if any(n == p or n.startswith(p + ".") for p in prefixes)]
        if not frozen:
            tops = sorted({n.split(".")[0] for n, _ in model.named_parameters()})
            raise FtoolError(f"finetune.freeze: {prefixes} match no parameter; the model's blocks are {', '.join(tops)}")
    params = dict(model.named_parameters())
    for name in frozen:
        params[name].requires_grad_(False)
    return frozen
