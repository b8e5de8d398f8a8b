"""In-memory datasets: scikit-learn's bundled digits and synthetic data for benchmarks and tests."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from ftool.data import DataInfo, Splits, checked_shape
from ftool.errors import FtoolError
from ftool.registry import DATASETS


@DATASETS.register("digits")
def digits() -> Splits:
    """scikit-learn's 1,797 8x8 handwritten digits (bundled with the package: works offline)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.long)
    info = DataInfo("classification", (1, 8, 8), 10, [str(c) for c in bunch.target_names],
                    mean=(images.mean().item(),), std=(images.std().item(),))
    return Splits(train=TensorDataset(images, labels), info=info)


@DATASETS.register("synthetic")
def synthetic(shape: list = (3, 32, 32), num_classes: int = 10, train_size: int = 8192,
              test_size: int = 1024, seed: int = 0) -> Splits:
    """Standard-normal inputs labelled by a fixed random linear teacher: learnable, any shape."""
    shape = checked_shape("data.shape", shape, "[3,32,32]")
    if num_classes < 2 or train_size < 1 or test_size < 1:
        raise FtoolError("data: synthetic needs num_classes >= 2, train_size >= 1 and test_size >= 1")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(train_size + test_size, *shape, generator=g)
    teacher = torch.randn(x[0].numel(), num_classes, generator=g)
    y = (x.flatten(1) @ teacher).argmax(1)
    info = DataInfo("classification", shape, num_classes, [str(c) for c in range(num_classes)])
    return Splits(train=TensorDataset(x[:train_size], y[:train_size]), info=info,
                  test=TensorDataset(x[train_size:], y[train_size:]))


@DATASETS.register("regression")
def regression(num_features: int = 10, num_outputs: int = 1, train_size: int = 1000,
               test_size: int = 200, noise: float = 0.1, seed: int = 0) -> Splits:
    """y = W x + b + noise with x ~ N(0, I): the seed's linear-regression setup."""
    if num_features < 1 or num_outputs < 1 or noise < 0:
        raise FtoolError("data: regression needs num_features >= 1, num_outputs >= 1 and noise >= 0")
    g = torch.Generator().manual_seed(seed)
    n = train_size + test_size
    x = torch.randn(n, num_features, generator=g)
    w = torch.randn(num_features, num_outputs, generator=g)
    b = torch.randn(num_outputs, generator=g)
    y = x @ w + b + noise * torch.randn(n, num_outputs, generator=g)
    info = DataInfo("regression", (num_features,), num_outputs)
    return Splits(train=TensorDataset(x[:train_size], y[:train_size]), info=info,
                  test=TensorDataset(x[train_size:], y[train_size:]))
