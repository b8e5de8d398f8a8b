"""The seed articles' convolutional nets, with the flatten size derived from the input."""

from torch import nn

from ftool.models.shapes import check_sizes, flat_features, image_channels
from ftool.registry import MODELS


def fc_head(features: nn.Module, input_shape, num_outputs: int, hidden: int, dropout: float,
            name: str) -> nn.Sequential:
    """Both nets' head: flatten -> fc hidden -> ReLU -> dropout -> fc, sized by what `features` gives."""
    return nn.Sequential(nn.Flatten(), nn.Linear(flat_features(features, input_shape, name), hidden), nn.ReLU(),
                         nn.Dropout(dropout), nn.Linear(hidden, num_outputs))


class FeaturesThenHead(nn.Module):
    """`features` (the convolutions), then `head`: the names their checkpoints' weights carry."""

    def forward(self, x):
        return self.head(self.features(x))


class SimpleCNN(FeaturesThenHead):
    """conv k5 -> max-pool 2 -> fc hidden -> ReLU -> fc (the seed's SimpleCNN).

    `padding` 0 is the seed's layout (806,666 parameters on 3x32x32, 10 classes); 2 keeps the
    spatial size, which helps small inputs such as 8x8 digits.
    """

    NAME = "simplecnn"

    def __init__(self, input_shape, num_outputs, channels: int = 32, hidden: int = 128,
                 padding: int = 0, dropout: float = 0.0):
        super().__init__()
        check_sizes(self.NAME, channels=channels, hidden=hidden)
        self.features = nn.Sequential(
            nn.Conv2d(image_channels(input_shape, self.NAME), channels, 5, padding=padding), nn.MaxPool2d(2)
        )
        self.head = fc_head(self.features, input_shape, num_outputs, hidden, dropout, self.NAME)


class ConvNet(FeaturesThenHead):
    """Two conv-ReLU-pool blocks (32, 64 channels, k3, padding 1) -> fc 128 -> fc (the seed's
    CustomModule)."""

    NAME = "convnet"

    def __init__(self, input_shape, num_outputs, hidden: int = 128, dropout: float = 0.0):
        super().__init__()
        check_sizes(self.NAME, hidden=hidden)
        self.features = nn.Sequential(
            nn.Conv2d(image_channels(input_shape, self.NAME), 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = fc_head(self.features, input_shape, num_outputs, hidden, dropout, self.NAME)


MODELS.register(SimpleCNN.NAME)(SimpleCNN)
MODELS.register(ConvNet.NAME)(ConvNet)
