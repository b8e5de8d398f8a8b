"""Datasets; importing this package registers them all in `ftool.registry.DATASETS`.

A dataset builder returns `Splits`: the training set, the test set where the data has one (else
ftool holds out `data.test_fraction`), an optional validation set, and `DataInfo`, which tells the
model its input shape and outputs. Samples are (input tensor, target) pairs; images come as uint8
or float tensors (C, H, W) and the transforms in `ftool.data.transforms` do the rest; texts come
as token ids, which `Splits.collate` pads into batches (`ftool.data.text`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from torch.utils.data import Dataset


@dataclass
class DataInfo:
    task: str  # "classification" | "regression"
    input_shape: tuple[int, ...]
    num_outputs: int  # classes, or regression targets
    class_names: list[str] = field(default_factory=list)
    mean: Optional[tuple[float, ...]] = None  # per-channel normalization; None: leave inputs as is
    std: Optional[tuple[float, ...]] = None
    text: bool = False  # token ids (input_shape is (max_length,)): batches are dicts for text models

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3 and not self.text


@dataclass
class Splits:
    train: Dataset
    info: DataInfo
    test: Optional[Dataset] = None
    val: Optional[Dataset] = None
    collate: Optional[Callable] = None  # the DataLoader's collate_fn (text: dynamic padding)


from ftool.data import tabular, text, vision  # noqa: E402,F401  (registration)
