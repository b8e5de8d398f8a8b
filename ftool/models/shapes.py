"""Shape helpers shared by the model families."""

import torch
from torch import nn

from ftool.errors import FtoolError, one_line
from ftool.values import is_size


def image_channels(input_shape, model: str) -> int:
    if len(input_shape) != 3:
        raise FtoolError(f"model: {model} needs image data (C, H, W), got input shape {tuple(input_shape)}")
    return input_shape[0]


def flat_features(features: nn.Module, input_shape, model: str) -> int:
    """How many values `features` produces per sample for this input shape (too small a one for the
    kernels and pools is a one-line error: it would otherwise be torch's traceback)."""
    with torch.no_grad():
        try:
            return features(torch.zeros(1, *input_shape)).flatten(1).shape[1]
        except RuntimeError as e:
            raise FtoolError(f"model: {model} cannot take inputs of shape {tuple(input_shape)}, too small for its "
                             f"layers ({one_line(e)}); give larger images (data.image_size=[H,W])") from None


def check_sizes(model: str, **sizes) -> None:
    """Layer sizes a user sets (`hidden=128`, `hidden=[128, 64]`): a size below 1 would be a layer of
    nothing (a model left with its output biases) or torch's traceback."""
    for key, value in sizes.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if not all(map(is_size, values)):
            raise FtoolError(f"model.{key}: {model}'s layer sizes must be whole numbers >= 1, got {value}")
