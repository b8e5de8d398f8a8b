"""The seed's SimpleNet (784-128-64-10) with configurable hidden sizes and dropout."""

import math

from torch import nn

from ftool.registry import MODELS


@MODELS.register("mlp")
class MLP(nn.Module):
    def __init__(self, input_shape, num_outputs, hidden: list | int = (128, 64), dropout: float = 0.0):
        super().__init__()
        layers, width = [nn.Flatten()], math.prod(input_shape)
        for size in [hidden] if isinstance(hidden, int) else hidden:  # hidden=64: one layer
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        self.net = nn.Sequential(*layers, nn.Linear(width, num_outputs))

    def forward(self, x):
        return self.net(x)
