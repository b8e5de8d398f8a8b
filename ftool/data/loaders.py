"""From a dataset builder's splits to DataLoaders: held-out splits with a fixed seed, transforms
per split, and the loader settings of `data.*`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import math

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, IterableDataset, Sampler

from ftool.config import DataConfig
from ftool.data import DataInfo, Splits
from ftool.data.samples import SampleReader, sample_reader
from ftool.data.transforms import check_augment, make_transform
from ftool.errors import FtoolError, TooFewToSplit


class SplitView(Dataset):
    """The samples of `base` at `indices` (all of them when None), read as ftool takes them (`read`:
    ftool.data.samples), their inputs then passed through `transform`."""

    def __init__(self, base: Dataset, indices: Optional[list[int]], transform, read: SampleReader):
        self.base, self.indices, self.transform, self.read = base, indices, transform, read

    def __len__(self):
        return len(self.base) if self.indices is None else len(self.indices)

    def __getitem__(self, i):
        x, y = self.read(self.base[i if self.indices is None else self.indices[i]])
        return (x if self.transform is None else self.transform(x)), y


class EpochSampler(Sampler[int]):
    """The training order: a permutation drawn from (seed, epoch), this process's share of it
    (every world_size-th index, as DistributedSampler does), from position `start` on.

    The order depends on nothing but (seed, epoch), so a resumed run continues exactly where the
    checkpoint was taken, mid-epoch included, without replaying the batches before it.

    With `lengths` (data.group_by_length), each run of 50 global batches of the permutation is
    sorted by length, so a batch holds texts of about one length and pads little, and the
    batches are then shuffled.
    """

    GROUP = 50  # batches per length-sorted run: big enough to group lengths, small enough to stay random

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1,
                 lengths: Optional[list[int]] = None, batch_size: int = 1):
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.per_rank = math.ceil(size / world_size)
        self.lengths, self.batch_size = lengths, batch_size  # batch_size: the global batch
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=g)
        order = torch.cat([order, order[: self.per_rank * self.world_size - self.size]])  # pad to share evenly
        if self.lengths is not None:
            order = self._grouped_by_length(order, g)
        return iter(order[self.rank::self.world_size][self.start:].tolist())

    def _grouped_by_length(self, order: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        lengths = torch.tensor(self.lengths)[order]
        run = self.GROUP * self.batch_size
        parts = [order[i:i + run][torch.argsort(lengths[i:i + run], stable=True)] for i in range(0, len(order), run)]
        batches = list(torch.cat(parts).split(self.batch_size))
        return torch.cat([batches[i] for i in torch.randperm(len(batches), generator=g).tolist()])

    def __len__(self) -> int:
        return self.per_rank - self.start


@dataclass
class Loaders:
    train: DataLoader
    val: Optional[DataLoader]
    test: DataLoader
    info: DataInfo
    everything: DataLoader  # every sample, as evaluated (`ftool eval split=all` on new data)
    train_eval: DataLoader  # the training split read as evaluation reads (`ftool eval split=train`)


def split_indices(n: int, fraction: float, generator: torch.Generator, of: Optional[list[int]] = None,
                  count: Optional[int] = None):
    """Shuffle `of` (default range(n)) and cut off `count` samples, or `fraction` of them: (kept, held_out)."""
    pool = list(range(n)) if of is None else of
    order = [pool[i] for i in torch.randperm(len(pool), generator=generator).tolist()]
    held = count if count is not None else max(1, round(len(order) * fraction))
    if held >= len(order):
        raise TooFewToSplit(f"data: holding out {held} of {len(order)} samples leaves none to train on "
                            f"(data.test_size, data.test_fraction, data.val_fraction)")
    return order[held:], order[:held]


def fold_indices(n: int, folds: int, fold: int, generator: torch.Generator) -> tuple[list[int], list[int]]:
    """(the rest, fold number `fold`) of the samples shuffled and cut into `folds` parts of sizes that
    differ by one at most: each sample is in the test split of exactly one fold."""
    if folds > n:
        raise FtoolError(f"data.folds: {folds} folds of {n} samples would leave some empty")
    order = torch.randperm(n, generator=generator).tolist()
    start, end = (fold * n // folds, (fold + 1) * n // folds)
    return order[:start] + order[end:], order[start:end]


def check_batch_split(batch_size: int, world_size: int) -> None:
    """`data.batch_size` is the global batch; each process takes an equal share of it."""
    if batch_size % world_size:
        raise FtoolError(f"data.batch_size: {batch_size} does not split evenly across {world_size} processes")


def build_loaders(cfg: DataConfig, splits: Splits, seed: int, rank: int = 0, world_size: int = 1) -> Loaders:
    """Loaders for this process. `data.batch_size` is the global batch: with several processes
    each takes its share of every batch, so one step sees the same samples as in one process.
    Validation and test are split across processes without padding (metrics sync exactly)."""
    check_batch_split(cfg.batch_size, world_size)
    for split, dataset in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        if isinstance(dataset, IterableDataset) or dataset is not None and not hasattr(dataset, "__len__"):
            raise FtoolError(f"data={cfg.name}: its {split} split ({type(dataset).__name__}) gives its samples in one "
                             f"order only; ftool holds out, shuffles and resumes mid-epoch by sample index, so "
                             f"a dataset gives len() and [i] (a torch Dataset that is not an IterableDataset, a list)")
    g = torch.Generator().manual_seed(cfg.split_seed)
    train_idx: Optional[list[int]] = None
    test_base, test_idx = splits.test, None
    if test_base is None:  # the data has no test split: hold one out of everything
        if cfg.folds and cfg.test_size:
            raise FtoolError(f"data.test_size: {cfg.test_size} is not for data.folds, whose fold is the test split")
        train_idx, test_idx = fold_indices(len(splits.train), cfg.folds, cfg.fold, g) if cfg.folds else \
            split_indices(len(splits.train), cfg.test_fraction, g, count=cfg.test_size)
        test_base = splits.train
    elif cfg.folds:
        raise FtoolError(f"data.folds: data={cfg.name} has a test split of its own; cross-validation folds are for "
                         f"data without one (a table, text files, images in class folders, digits)")
    val_base, val_idx = splits.val, None
    if val_base is None and cfg.val_fraction > 0:
        train_idx, val_idx = split_indices(len(splits.train), cfg.val_fraction, g, of=train_idx)
        val_base = splits.train

    info = splits.info
    first = splits.train[0]
    read = sample_reader(first, info, cfg.name)
    train_tf = eval_tf = None
    if info.text:  # (texts are token ids: no per-sample transform)
        check_augment(cfg, info)
    else:  # uint8 images are scaled to [0, 1]; float data is taken as it is
        stored = read(first)[0].dtype
        train_tf, eval_tf = (make_transform(cfg, info, train, stored) for train in (True, False))
    eval_bs = cfg.eval_batch_size or cfg.batch_size
    # torch pins memory only for an accelerator; on a CPU-only machine it would warn in every run
    workers = {"num_workers": cfg.num_workers, "pin_memory": cfg.pin_memory and torch.accelerator.is_available(),
               "persistent_workers": cfg.persistent_workers and cfg.num_workers > 0,
               "collate_fn": splits.collate}

    def eval_loader(base, idx):
        if world_size > 1:
            idx = (list(range(len(base))) if idx is None else idx)[rank::world_size]
        return DataLoader(SplitView(base, idx, eval_tf, read), batch_size=eval_bs, shuffle=False, **workers)

    train_view = SplitView(splits.train, train_idx, train_tf, read)
    lengths = None
    if cfg.group_by_length:
        if not hasattr(splits.train, "lengths"):
            raise FtoolError(f"data.group_by_length: {cfg.name} has no sample lengths to group by (text data has)")
        every = splits.train.lengths()
        lengths = [every[i] for i in train_idx] if train_idx is not None else every
    # The loader's own generator seeds its workers; it keeps iterator creation from drawing on
    # the global RNG, which a resumed run restores exactly.
    train = DataLoader(train_view, batch_size=cfg.batch_size // world_size,
                       sampler=EpochSampler(len(train_view), seed, rank, world_size, lengths, cfg.batch_size),
                       generator=torch.Generator().manual_seed(seed), **workers)
    val = eval_loader(val_base, val_idx) if val_base is not None else None
    whole = [splits.train] + [d for d in (splits.val, splits.test) if d is not None]
    return Loaders(train=train, val=val, test=eval_loader(test_base, test_idx), info=info,
                   everything=eval_loader(ConcatDataset(whole) if len(whole) > 1 else whole[0], None),
                   train_eval=eval_loader(splits.train, train_idx))
