"""From a dataset builder's splits to DataLoaders: held-out splits with a fixed seed, transforms
per split, and the loader settings of `data.*`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch.utils.data import DataLoader, Dataset

from ftool.config import DataConfig
from ftool.data import DataInfo, Splits
from ftool.data.transforms import make_transform


class SplitView(Dataset):
    """The samples of `base` at `indices` (all of them when None), passed through `transform`."""

    def __init__(self, base: Dataset, indices: Optional[list[int]], transform):
        self.base, self.indices, self.transform = base, indices, transform

    def __len__(self):
        return len(self.base) if self.indices is None else len(self.indices)

    def __getitem__(self, i):
        x, y = self.base[i if self.indices is None else self.indices[i]]
        return (x, y) if self.transform is None else (self.transform(x), y)


@dataclass
class Loaders:
    train: DataLoader
    val: Optional[DataLoader]
    test: DataLoader
    info: DataInfo


def split_indices(n: int, fraction: float, generator: torch.Generator, of: Optional[list[int]] = None):
    """Shuffle `of` (default range(n)) and cut off `fraction` of it: (kept, held_out)."""
    pool = list(range(n)) if of is None else of
    order = [pool[i] for i in torch.randperm(len(pool), generator=generator).tolist()]
    held = max(1, round(len(order) * fraction))
    return order[held:], order[:held]


def build_loaders(cfg: DataConfig, splits: Splits, seed: int) -> Loaders:
    g = torch.Generator().manual_seed(cfg.split_seed)
    train_idx: Optional[list[int]] = None
    test_base, test_idx = splits.test, None
    if test_base is None:  # the data has no test split: hold one out of everything
        train_idx, test_idx = split_indices(len(splits.train), cfg.test_fraction, g)
        test_base = splits.train
    val_base, val_idx = splits.val, None
    if val_base is None and cfg.val_fraction > 0:
        train_idx, val_idx = split_indices(len(splits.train), cfg.val_fraction, g, of=train_idx)
        val_base = splits.train

    info = splits.info
    train_tf, eval_tf = make_transform(cfg, info, train=True), make_transform(cfg, info, train=False)
    eval_bs = cfg.eval_batch_size or cfg.batch_size
    workers = {"num_workers": cfg.num_workers, "pin_memory": cfg.pin_memory,
               "persistent_workers": cfg.persistent_workers and cfg.num_workers > 0}

    def eval_loader(base, idx):
        return DataLoader(SplitView(base, idx, eval_tf), batch_size=eval_bs, shuffle=False, **workers)

    train = DataLoader(SplitView(splits.train, train_idx, train_tf), batch_size=cfg.batch_size,
                       shuffle=True, generator=torch.Generator().manual_seed(seed), **workers)
    val = eval_loader(val_base, val_idx) if val_base is not None else None
    return Loaders(train=train, val=val, test=eval_loader(test_base, test_idx), info=info)
