"""Model families; importing this package registers them all in `ftool.registry.MODELS`.

Every builder takes `input_shape` (C, H, W or features) and `num_outputs` (classes or regression
targets) from the data, so no config ever hand-computes a flatten size. A builder that loads
pretrained weights takes `pretrained` (False when a checkpoint will bring every weight: eval,
predict, export) and sets `model.pretrained_parameters`, the names of the parameters it loaded:
`finetune.freeze=backbone` and `finetune.backbone_lr_mult` act on those.
"""

import torch
from torch import nn

from ftool.models import cnn, hf, linear, mlp, torchvision_models  # noqa: F401  (registration)


def apply_init(model: nn.Module, scheme: str) -> None:
    """Re-initialize conv and linear layers: 'kaiming' (He, for ReLU nets) or 'xavier' (Glorot).
    Layers whose weights the builder loaded pretrained keep them: only the new ones (a fresh head)
    start from the scheme."""
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
    """Make a regression model answer in its targets' units, output * std + mean, having learned them
    standardized (the loss divides by std: ftool.metrics.build_loss). Without it the outputs of a
    network with Adam, whose steps are about the LR in size, would take some 100,000 steps to reach a
    price in the hundreds of thousands. A forward hook, so the model's layers and checkpoint keys stay
    as the builder made them; the buffers are not saved in checkpoints: they come from the run's
    summary.json, as the inputs' scaling does."""
    model.register_buffer("target_mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
    model.register_buffer("target_std", torch.tensor(std, dtype=torch.float32), persistent=False)
    model.register_forward_hook(_in_target_units)


def _in_target_units(model: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    return output * model.target_std + model.target_mean
