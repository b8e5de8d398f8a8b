"""Datasets; importing this package registers them all in `ftool.registry.DATASETS`.

A dataset builder returns `Splits`: the training set, the test set where the data has one (else ftool
holds out `data.test_fraction`), an optional validation set, and `DataInfo`, which tells the model its
input shape and outputs. Samples are (input, target) pairs: images as uint8 or float tensors (C, H, W),
which `ftool.data.transforms` scales and normalizes; texts as token ids, which `Splits.collate` pads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Optional

from torch.utils.data import Dataset


@dataclass
class DataInfo:
    task: str  # "classification" | "regression"
    input_shape: tuple[int, ...]
    num_outputs: int  # classes, or regression targets
    class_names: list[str] = field(default_factory=list)
    mean: Optional[tuple[float, ...]] = None  # per-channel normalization; None: inputs as they are
    std: Optional[tuple[float, ...]] = None
    text: bool = False  # token ids (input_shape is (max_length,)): batches are dicts for text models
    # how data=table read its table ({"features", "target", "task", "categorical", "missing"}): new tables
    # given to the run (eval, predict) are read the same
    columns: dict = field(default_factory=dict)
    # regression targets' mean and std: the model learns them standardized (ftool.models.scale_outputs)
    target_mean: Optional[tuple[float, ...]] = None
    target_std: Optional[tuple[float, ...]] = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "DataInfo":
        known = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
        return cls(**{k: tuple(v) if isinstance(v, list) and k != "class_names" else v for k, v in known.items()})

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


from ftool.data import hf, tabular, text, vision  # noqa: E402,F401  (registration)
