"""Model families; importing this package registers them all in `ftool.registry.MODELS`.

Every builder takes `input_shape` (C, H, W or features) and `num_outputs` (classes or regression
targets) from the data, so no config hand-computes a flatten size. A builder that loads pretrained
weights takes `pretrained` (False where a checkpoint brings every weight: eval, predict, export) and
sets `model.pretrained_parameters`, the names it loaded: `finetune.freeze=backbone` and
`finetune.backbone_lr_mult` act on those.
"""

import torch
from torch import nn

from ftool.models import cnn, hf, linear, mlp, ngrams, torchvision_models  # noqa: F401  (registration)


def adapt_stem(model: nn.Module, channels: int) -> None:
    """A vision model's first convolution made to take the data's `channels` (grayscale images into an RGB
    architecture); its pretrained weights, if any, no longer fit and start anew."""
    found = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if found and found[1].in_channels != channels:
        name, conv = found
        model.set_submodule(name, nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                            conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode))
        getattr(model, "pretrained_parameters", set()).difference_update({f"{name}.weight", f"{name}.bias"})


def apply_init(model: nn.Module, scheme: str) -> None:
    """Re-initialize conv and linear layers: 'kaiming' (He, for ReLU nets) or 'xavier' (Glorot). Layers
    the builder loaded pretrained keep their weights: only the new ones (a fresh head) start so."""
    if scheme == "default":
        return
    pretrained = getattr(model, "pretrained_parameters", set())
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)) and f"{name}.weight" not in pretrained:
            if scheme == "kaiming":
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def scale_outputs(model: nn.Module, mean, std) -> None:
    """A regression model answers in its targets' units, output * std + mean, having learned them
    standardized (the loss divides by std). A forward hook, so the layers and checkpoint keys stay as the
    builder made them; the buffers come from the run's record, as the inputs' scaling does."""
    model.register_buffer("target_mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
    model.register_buffer("target_std", torch.tensor(std, dtype=torch.float32), persistent=False)
    model.register_forward_hook(lambda module, inputs, output: output * module.target_std + module.target_mean)
