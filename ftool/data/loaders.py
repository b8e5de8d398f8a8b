"""From a dataset builder's splits to DataLoaders: held-out splits with a fixed seed, transforms
per split, and the loader settings of `data.*`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import math

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ftool.config import DataConfig
from ftool.data import DataInfo, Splits
from ftool.data.transforms import make_transform
from ftool.errors import FtoolError


class SplitView(Dataset):
    """The samples of `base` at `indices` (all of them when None), passed through `transform`."""

    def __init__(self, base: Dataset, indices: Optional[list[int]], transform):
        self.base, self.indices, self.transform = base, indices, transform

    def __len__(self):
        return len(self.base) if self.indices is None else len(self.indices)

    def __getitem__(self, i):
        x, y = self.base[i if self.indices is None else self.indices[i]]
        return (x, y) if self.transform is None else (self.transform(x), y)


class EpochSampler(Sampler[int]):
    """The training order: a permutation drawn from (seed, epoch), this process's share of it
    (every world_size-th index, as DistributedSampler does), from position `start` on.

    The order depends on nothing but (seed, epoch), so a resumed run continues exactly where the
    checkpoint was taken, mid-epoch included, without replaying the batches before it.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.per_rank = math.ceil(size / world_size)
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        order = torch.cat([order, order[: self.per_rank * self.world_size - self.size]])  # pad to share evenly
        return iter(order[self.rank::self.world_size][self.start:].tolist())

    def __len__(self) -> int:
        return self.per_rank - self.start


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


def build_loaders(cfg: DataConfig, splits: Splits, seed: int, rank: int = 0, world_size: int = 1) -> Loaders:
    """Loaders for this process. `data.batch_size` is the global batch: with several processes
    each takes its share of every batch, so one step sees the same samples as in one process.
    Validation and test are split across processes without padding (metrics sync exactly)."""
    if cfg.batch_size % world_size:
        raise FtoolError(f"data.batch_size: {cfg.batch_size} does not split evenly across {world_size} processes")
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
    stored = splits.train[0][0].dtype  # uint8 images are scaled to [0, 1]; float data as it is
    train_tf, eval_tf = (make_transform(cfg, info, train, stored) for train in (True, False))
    eval_bs = cfg.eval_batch_size or cfg.batch_size
    workers = {"num_workers": cfg.num_workers, "pin_memory": cfg.pin_memory,
               "persistent_workers": cfg.persistent_workers and cfg.num_workers > 0}

    def eval_loader(base, idx):
        if world_size > 1:
            idx = (list(range(len(base))) if idx is None else idx)[rank::world_size]
        return DataLoader(SplitView(base, idx, eval_tf), batch_size=eval_bs, shuffle=False, **workers)

    train_view = SplitView(splits.train, train_idx, train_tf)
    # The loader's own generator seeds its workers; it keeps iterator creation from drawing on
    # the global RNG, which a resumed run restores exactly.
    train = DataLoader(train_view, batch_size=cfg.batch_size // world_size,
                       sampler=EpochSampler(len(train_view), seed, rank, world_size),
                       generator=torch.Generator().manual_seed(seed), **workers)
    val = eval_loader(val_base, val_idx) if val_base is not None else None
    return Loaders(train=train, val=val, test=eval_loader(test_base, test_idx), info=info)
