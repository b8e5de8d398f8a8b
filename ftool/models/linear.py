"""The seed's linear regression: one Linear layer (10 -> 1 for its data)."""

import math

from torch import nn

from ftool.registry import MODELS


@MODELS.register("linear")
class LinearModel(nn.Module):
    def __init__(self, input_shape, num_outputs, bias: bool = True):
        super().__init__()
        self.fc = nn.Linear(math.prod(input_shape), num_outputs, bias=bias)

    def forward(self, x):
        return self.fc(x.flatten(1))
