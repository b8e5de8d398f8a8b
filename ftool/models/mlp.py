"""The seed's SimpleNet (784-128-64-10) with configurable hidden sizes and dropout."""

import math

from torch import nn

from ftool.models.shapes import check_sizes
from ftool.registry import MODELS


@MODELS.register("mlp")
class MLP(nn.Module):
    def __init__(self, input_shape, num_outputs, hidden: list | int = (128, 64), dropout: float = 0.0):
        super().__init__()
        check_sizes("mlp", hidden=hidden)
        hidden = [hidden] if isinstance(hidden, int) else list(hidden)  # hidden=64: one layer
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, num_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
