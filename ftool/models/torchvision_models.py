"""ResNets from torchvision, adapted to the data's channels and classes, optionally starting from
torchvision's pretrained weights (`model.weights=IMAGENET1K_V1`)."""

from pathlib import Path

import torch
from torch import nn

from ftool.errors import FtoolError, one_line
from ftool.models.shapes import image_channels
from ftool.registry import MODELS


def pretrained_state(arch: str, weights: str) -> dict[str, torch.Tensor]:
    """torchvision's weights for `arch`, through its weights API and torch hub's cache (downloaded
    once); loaded with weights_only=True, so the file cannot run code."""
    from torchvision import models as tvm  # (imported when used: it takes over a second)

    options = tvm.get_model_weights(arch)
    try:  # as torchvision's code names them too: ResNet18_Weights.IMAGENET1K_V1, in any case
        chosen = options[weights.rpartition(".")[2].upper()]
    except KeyError:
        raise FtoolError(f"model.weights: {arch} has no weights {weights!r}; options: "
                         f"{', '.join(options.__members__)}") from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(chosen.url).name
    try:
        return torch.hub.load_state_dict_from_url(chosen.url, progress=True, check_hash=True, weights_only=True)
    except Exception as e:  # offline: URLError, OSError, ...; a damaged file: RuntimeError
        raise FtoolError(f"model.weights: cannot get {arch} {weights} ({type(e).__name__}: {one_line(e)}); "
                         f"put the file {chosen.url} at {cached} (TORCH_HOME sets the folder)") from None


def _resnet(arch: str):
    def build(input_shape, num_outputs, pretrained=True, weights: str | None = None):
        from torchvision import models as tvm

        channels = image_channels(input_shape, arch)
        if weights is not None and channels != 3:
            raise FtoolError(f"model.weights: {arch}'s pretrained weights take 3-channel images; this data has "
                             f"{channels} (data=imagefolder reads colour with data.grayscale=false)")
        model = tvm.get_model(arch, weights=None, num_classes=num_outputs)
        if channels != 3:
            model.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        if weights is not None and pretrained:  # eval/predict/export take every weight from the checkpoint
            state = {k: v for k, v in pretrained_state(arch, weights).items() if not k.startswith("fc.")}
            model.load_state_dict(state, strict=False)
            model.pretrained_parameters = {n for n, _ in model.named_parameters() if n in state}
        return model

    build.__name__ = arch
    return build


for _arch in ("resnet18", "resnet34", "resnet50"):
    MODELS.register(_arch)(_resnet(_arch))
