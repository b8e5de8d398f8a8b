"""Shape helpers shared by the model families."""

import torch
from torch import nn

from ftool.errors import FtoolError


def image_channels(input_shape, model: str) -> int:
    if len(input_shape) != 3:
        raise FtoolError(f"model: {model} needs image data (C, H, W), got input shape {tuple(input_shape)}")
    return input_shape[0]


def flat_features(features: nn.Module, input_shape) -> int:
    """How many values `features` produces per sample for this input shape."""
    with torch.no_grad():
        return features(torch.zeros(1, *input_shape)).flatten(1).shape[1]
