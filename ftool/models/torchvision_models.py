"""ResNets from torchvision, sized to the data's channels and classes, optionally from torchvision's
pretrained weights (`model.weights=IMAGENET1K_V1`), fetched through torch hub's cache."""

import torch
from torch import nn

from ftool.registry import MODELS


def _resnet(arch: str):
    def build(input_shape, num_outputs, pretrained=True, weights: str | None = None):
        from torchvision import models as tvm

        model = tvm.get_model(arch, weights=None, num_classes=num_outputs)
        if input_shape[0] != 3:
            model.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=7, stride=2, padding=3, bias=False)
        if weights is not None and pretrained:  # eval/predict/export take every weight from the checkpoint
            chosen = tvm.get_model_weights(arch)[weights.rpartition(".")[2].upper()]
            state = torch.hub.load_state_dict_from_url(chosen.url, check_hash=True, weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            model.load_state_dict(state, strict=False)
            model.pretrained_parameters = {n for n, _ in model.named_parameters() if n in state}
        return model

    build.__name__ = arch
    return build


for _arch in ("resnet18", "resnet34", "resnet50"):
    MODELS.register(_arch)(_resnet(_arch))
