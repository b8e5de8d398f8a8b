"""From a dataset builder's splits to loaders: held-out splits with a fixed seed, transforms per split,
and the loader settings of `data.*`. Data that fits is held whole as tensors on the training device
and batched by indexing (`TensorLoader`); other data goes through torch's DataLoader."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler, TensorDataset, default_collate

from ftool.config import DataConfig
from ftool.data import DataInfo, Splits
from ftool.data.transforms import BatchAugment, augments, make_transform

# data.loader=auto holds a dataset as tensors up to this many bytes (of float32 inputs, all splits):
# on a GPU, also at most a quarter of its free memory.
TENSOR_BUDGET = 2 * 2**30


class SplitView(Dataset):
    """The samples of `base` at `indices` (all when None), their inputs passed through `transform`."""

    def __init__(self, base: Dataset, indices: Optional[list[int]], transform):
        self.base, self.indices, self.transform = base, indices, transform

    def __len__(self):
        return len(self.base) if self.indices is None else len(self.indices)

    def __getitem__(self, i):
        x, y = self.base[i if self.indices is None else self.indices[i]]
        return (x if self.transform is None else self.transform(x)), y


class EpochSampler(Sampler[int]):
    """The training order: a permutation drawn from (seed, epoch), this process's share of it (every
    world_size-th index, as DistributedSampler), from position `start` on. It depends on nothing but
    (seed, epoch), so a resumed run continues exactly where its checkpoint was taken, mid-epoch too.

    With `lengths` (data.group_by_length), each run of 50 global batches is sorted by length, so a
    batch holds texts of about one length and pads little; the batches are then shuffled."""

    GROUP = 50

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
        order = torch.cat([order, order[: self.per_rank * self.world_size - self.size]])  # share evenly
        if self.lengths is not None:
            lengths, run = torch.tensor(self.lengths)[order], self.GROUP * self.batch_size
            order = torch.cat([order[i:i + run][torch.argsort(lengths[i:i + run], stable=True)]
                               for i in range(0, len(order), run)])
            batches = order.split(self.batch_size)
            order = torch.cat([batches[i] for i in torch.randperm(len(batches), generator=g).tolist()])
        return iter(order[self.rank::self.world_size][self.start:].tolist())

    def __len__(self) -> int:
        return self.per_rank - self.start


class TensorLoader:
    """Batches of inputs and targets held whole as tensors (on the training device), by indexing them with
    the sampler's order: no per-sample __getitem__, no collate. The same order and batches as a
    DataLoader with that sampler; `transform` runs on each batch (training: data.augment)."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int, sampler=None, transform=None):
        self.inputs, self.targets, self.batch_size, self.sampler = inputs, targets, batch_size, sampler
        self.transform, self.collate_fn = transform, None
        self.dataset = TensorDataset(inputs, targets)

    def __len__(self) -> int:
        return math.ceil((len(self.sampler) if self.sampler is not None else len(self.inputs)) / self.batch_size)

    def __iter__(self):
        order = None if self.sampler is None else torch.tensor(list(self.sampler), device=self.inputs.device)
        for start in range(0, len(self.inputs) if order is None else len(order), self.batch_size):
            if order is None:
                x, y = self.inputs[start:start + self.batch_size], self.targets[start:start + self.batch_size]
            else:
                index = order[start:start + self.batch_size]
                x, y = self.inputs[index], self.targets[index]
            yield (x if self.transform is None else self.transform(x)), y


def as_tensors(loader: DataLoader, device: torch.device) -> TensorLoader:
    """`loader`'s samples, read once (through its per-sample transform), as a TensorLoader on `device`."""
    samples = [loader.dataset[i] for i in range(len(loader.dataset))]
    inputs, targets = default_collate(samples) if samples else (torch.zeros(0), torch.zeros(0))
    return TensorLoader(inputs.to(device), targets.to(device), loader.batch_size,
                        loader.sampler if isinstance(loader.sampler, EpochSampler) else None)


def fits_as_tensors(cfg: DataConfig, splits: Splits, device: torch.device) -> bool:
    """data.loader: `tensor`, `dataloader`, or `auto`: tensors where every input is a tensor of one shape
    (no text to pad) and the data fits TENSOR_BUDGET (a GPU: a quarter of its free memory too)."""
    if cfg.loader != "auto":
        return cfg.loader == "tensor"
    if splits.collate is not None or splits.info.text or not isinstance(splits.train[0][0], torch.Tensor):
        return False
    samples = sum(len(d) for d in (splits.train, splits.val, splits.test) if d is not None)
    need = samples * math.prod(splits.info.input_shape) * 4
    free = torch.cuda.mem_get_info(device)[0] // 4 if device.type == "cuda" else TENSOR_BUDGET
    return need <= min(TENSOR_BUDGET, free)


@dataclass
class Loaders:
    train: DataLoader
    val: Optional[DataLoader]
    test: DataLoader
    info: DataInfo
    everything: DataLoader  # every sample, as evaluated (`ftool eval split=all`)
    train_eval: DataLoader  # the training split read as evaluation reads it (`ftool eval split=train`)


def split_indices(n: int, fraction: float, generator: torch.Generator, of: Optional[list[int]] = None,
                  count: Optional[int] = None) -> tuple[list[int], list[int]]:
    """Shuffle `of` (default range(n)) and cut off `count` samples, or `fraction` of them: (kept, held_out)."""
    pool = list(range(n)) if of is None else of
    order = [pool[i] for i in torch.randperm(len(pool), generator=generator).tolist()]
    held = count if count is not None else max(1, round(len(order) * fraction))
    return order[held:], order[:held]


def fold_indices(n: int, folds: int, fold: int, generator: torch.Generator) -> tuple[list[int], list[int]]:
    """(the rest, fold number `fold`) of the samples shuffled and cut into `folds` near-equal parts."""
    order = torch.randperm(n, generator=generator).tolist()
    start, end = fold * n // folds, (fold + 1) * n // folds
    return order[:start] + order[end:], order[start:end]


def build_loaders(cfg: DataConfig, splits: Splits, seed: int, rank: int = 0, world_size: int = 1,
                  overfit: int = 0, device: torch.device | None = None) -> Loaders:
    """Loaders for this process. `data.batch_size` is the global batch: each process takes its share of
    every batch. Validation and test are split across processes without padding (metrics sum exactly).
    `overfit` (trainer.overfit_batches): train and validate on that many batches' first training samples,
    unaugmented."""
    g = torch.Generator().manual_seed(cfg.split_seed)
    train_idx, test_base, test_idx = None, splits.test, None
    if test_base is None:  # the data has no test split: hold one out of everything
        test_base = splits.train
        train_idx, test_idx = fold_indices(len(splits.train), cfg.folds, cfg.fold, g) if cfg.folds else \
            split_indices(len(splits.train), cfg.test_fraction, g, count=cfg.test_size)
    val_base, val_idx = splits.val, None
    if val_base is None and cfg.val_fraction > 0:
        val_base = splits.train
        train_idx, val_idx = split_indices(len(splits.train), cfg.val_fraction, g, of=train_idx)
    info, stored, device = splits.info, splits.train[0][0].dtype, device or torch.device("cpu")
    train_tf, eval_tf = (make_transform(cfg, info, train, stored) for train in (True, False))
    if overfit:
        train_idx = (train_idx or list(range(len(splits.train))))[:overfit * cfg.batch_size]
        train_tf, val_base, val_idx = eval_tf, splits.train, train_idx
    tensors = fits_as_tensors(cfg, splits, device)
    # held as tensors, training images are augmented (then normalized) per batch on the device
    batch_augment = BatchAugment(cfg, info).to(device) if tensors and train_tf is not eval_tf and augments(cfg, info) \
        else None
    if batch_augment is not None:
        train_tf = make_transform(cfg, info, False, stored, normalize=False)
    workers = {"num_workers": cfg.num_workers, "pin_memory": cfg.pin_memory and torch.accelerator.is_available(),
               "persistent_workers": cfg.persistent_workers and cfg.num_workers > 0, "collate_fn": splits.collate}

    def eval_loader(base, idx):
        if world_size > 1:
            idx = (list(range(len(base))) if idx is None else idx)[rank::world_size]
        return DataLoader(SplitView(base, idx, eval_tf), batch_size=cfg.eval_batch_size or cfg.batch_size, **workers)

    train_view = SplitView(splits.train, train_idx, train_tf)
    lengths = None
    if cfg.group_by_length:
        every = splits.train.lengths()
        lengths = every if train_idx is None else [every[i] for i in train_idx]
    # The loader's own generator seeds its workers and keeps it from drawing on the global RNG,
    # which a resumed run restores exactly.
    train = DataLoader(train_view, batch_size=cfg.batch_size // world_size,
                       sampler=EpochSampler(len(train_view), seed, rank, world_size, lengths, cfg.batch_size),
                       generator=torch.Generator().manual_seed(seed), **workers)
    whole = [splits.train] + [d for d in (splits.val, splits.test) if d is not None]
    loaders = Loaders(train=train, val=eval_loader(val_base, val_idx) if val_base is not None else None,
                      test=eval_loader(test_base, test_idx), info=info,
                      everything=eval_loader(ConcatDataset(whole) if len(whole) > 1 else whole[0], None),
                      train_eval=eval_loader(splits.train, train_idx))
    if not tensors:
        return loaders
    # (eval's whole-data and train-as-evaluated loaders stay DataLoaders: read once, they would gain nothing)
    held = {name: as_tensors(getattr(loaders, name), device) for name in ("train", "val", "test")
            if getattr(loaders, name) is not None}
    held["train"].transform = batch_augment
    return dataclasses.replace(loaders, **held)
