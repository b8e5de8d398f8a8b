"""The seed articles' convolutional nets, with the flatten size derived from the input."""

import torch
from torch import nn

from ftool.registry import MODELS


class FeaturesThenHead(nn.Module):
    """`features` (the convolutions), then a head: flatten -> fc hidden -> ReLU -> dropout -> fc, sized by
    what `features` gives for this input shape."""

    def __init__(self, features: nn.Module, input_shape, num_outputs: int, hidden: int, dropout: float):
        super().__init__()
        self.features = features
        with torch.no_grad():
            flat = features(torch.zeros(1, *input_shape)).flatten(1).shape[1]
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, num_outputs))

    def forward(self, x):
        return self.head(self.features(x))


@MODELS.register("simplecnn")
def simplecnn(input_shape, num_outputs, channels: int = 32, hidden: int = 128, padding: int = 0,
              dropout: float = 0.0) -> nn.Module:
    """conv k5 -> max-pool 2 -> fc hidden -> ReLU -> fc (the seed's SimpleCNN). `padding` 0 is the seed's
    layout (806,666 parameters on 3x32x32, 10 classes); 2 keeps the size of small inputs (8x8 digits)."""
    features = nn.Sequential(nn.Conv2d(input_shape[0], channels, 5, padding=padding), nn.MaxPool2d(2))
    return FeaturesThenHead(features, input_shape, num_outputs, hidden, dropout)


@MODELS.register("convnet")
def convnet(input_shape, num_outputs, hidden: int = 128, dropout: float = 0.0) -> nn.Module:
    """Two conv-ReLU-pool blocks (32, 64 channels, k3, padding 1) -> fc 128 -> fc (the seed's CustomModule)."""
    features = nn.Sequential(nn.Conv2d(input_shape[0], 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    return FeaturesThenHead(features, input_shape, num_outputs, hidden, dropout)
