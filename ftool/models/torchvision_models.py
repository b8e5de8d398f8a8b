"""Any torchvision or timm classification model by name (`model=torchvision model.arch=convnext_tiny`,
`model=timm model.arch=resnet18d`), its head replaced for the data's classes (its first convolution takes the data's
channels: ftool.models.adapt_stem), optionally from pretrained weights: an enum name (`DEFAULT`, `IMAGENET1K_V1`), a tag
(timm), or a local weights file. Downloads go through torch hub's or Hugging Face's cache."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ftool.errors import ConfigError
from ftool.registry import MODELS, close_match


def head_of(model: nn.Module) -> nn.Module:
    """The layer that gives the classes, whatever the architecture calls it: its last linear layer (a
    1x1 convolution where it has none, as SqueezeNet)."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)] or \
        [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return layers[-1]


def _load_backbone(model: nn.Module, state: dict) -> None:
    """Load every pretrained tensor that fits, but the head's (the data's classes are new); mark them."""
    head = {id(p) for p in head_of(model).parameters()}
    own = {n: p for n, p in model.named_parameters() if id(p) not in head}
    kept = {k: v for k, v in state.items() if k not in dict(model.named_parameters()) or
            (k in own and own[k].shape == v.shape)}
    model.load_state_dict(kept, strict=False)
    model.pretrained_parameters = {n for n in own if n in kept}


@MODELS.register("torchvision")
def torchvision_model(arch: str, input_shape, num_outputs, pretrained=True, weights: str | None = None):
    """torchvision.models.get_model(arch); weights: DEFAULT | an enum name of get_model_weights(arch) | a
    weights file | null."""
    from torchvision import models as tvm

    from ftool.engine.checkpoint import load_state_dict_file

    names = tvm.list_models(tvm)
    if arch not in names:
        raise ConfigError(f"model.arch: torchvision has no classification model '{arch}'.{close_match(arch, names)}")
    extra = {"aux_logits": False} if arch in ("googlenet", "inception_v3") else {}  # (they return tuples else)
    model = tvm.get_model(arch, weights=None, num_classes=num_outputs, **extra)
    if weights is not None and pretrained:  # eval/predict/export take every weight from the checkpoint
        path = Path(weights).expanduser()
        if path.is_file():
            state = load_state_dict_file(path)
        else:
            enum = tvm.get_model_weights(arch)
            if weights not in enum.__members__:
                raise ConfigError(f"model.weights: {arch} has no weights '{weights}' and there is no such file; "
                                  f"its weights: {', '.join(enum.__members__)}.{close_match(weights, enum.__members__)}")
            state = enum[weights].get_state_dict(progress=False, check_hash=True)
        _load_backbone(model, state)
    return model


@MODELS.register("timm")
def timm_model(arch: str, input_shape, num_outputs, pretrained=True, weights: str | None = None):
    """timm.create_model(arch) (`pip install "ftool[timm]"`); weights: DEFAULT (timm's default tag) | a tag
    (`arch.tag`) | a weights file | null. Pretrained weights come from Hugging Face's cache."""
    import timm

    path = Path(weights).expanduser() if weights else None
    use = weights is not None and pretrained
    name = f"{arch}.{weights}" if use and weights != "DEFAULT" and not path.is_file() else arch
    model = timm.create_model(name, pretrained=use, num_classes=num_outputs, in_chans=input_shape[0],
                              **({"pretrained_cfg_overlay": {"file": str(path)}} if use and path.is_file() else {}))
    if use:
        head = {id(p) for p in model.get_classifier().parameters()}
        model.pretrained_parameters = {n for n, p in model.named_parameters() if id(p) not in head}
    return model
