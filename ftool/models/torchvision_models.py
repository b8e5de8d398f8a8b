"""ResNets from torchvision, adapted to the data's channels and classes."""

from torch import nn
from torchvision import models as tvm

from ftool.errors import FtoolError
from ftool.models.shapes import image_channels
from ftool.registry import MODELS


def _resnet(arch: str):
    def build(input_shape, num_outputs, weights: str | None = None):
        if weights is not None:
            raise FtoolError(
                f"model.weights: pretrained weights are not supported by `ftool train` yet; "
                f"use weights=null (got {weights!r})"
            )
        channels = image_channels(input_shape, arch)
        model = tvm.get_model(arch, weights=None, num_classes=num_outputs)
        if channels != 3:
            model.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        return model

    build.__name__ = arch
    return build


for _arch in ("resnet18", "resnet34", "resnet50"):
    MODELS.register(_arch)(_resnet(_arch))
