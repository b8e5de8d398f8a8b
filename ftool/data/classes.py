"""`data.classes`: train on some of a dataset's classes, relabelled 0..k-1 (the seed articles'
"fine-tune a pretrained CNN on new classes": pretrain on digits 0-4, fine-tune on 5-9); and new data
given to `ftool eval`, labelled by a trained run's classes."""

from __future__ import annotations

import dataclasses

from torch.utils.data import Dataset, TensorDataset

from ftool.data import Splits
from ftool.errors import FtoolError


def check_split_classes(where: str, found: list[str], train: list[str]) -> None:
    """A val or test split may hold some of train's classes (labelled as train labels them); a class
    train has not would be one the model never learns, so it is an error (`where`: the setting, the path)."""
    unknown = [name for name in found if name not in train]
    if unknown:
        raise FtoolError(f"{where} has classes the train data has not: {', '.join(unknown)} "
                         f"(train: {', '.join(train)})")


class ClassSubset(Dataset):
    """The samples of `base` whose label is in `mapping`, with the label mapped."""

    def __init__(self, base: Dataset, mapping: dict[int, int]):
        self.base, self.mapping = base, mapping
        self.indices = [i for i, y in enumerate(labels_of(base)) if y in mapping]
        if hasattr(base, "lengths"):  # text: data.group_by_length groups the kept samples by theirs
            self.lengths = self._kept_lengths

    @property
    def labels(self) -> list[int]:
        every = labels_of(self.base)
        return [self.mapping[every[i]] for i in self.indices]

    def _kept_lengths(self) -> list[int]:
        every = self.base.lengths()
        return [every[i] for i in self.indices]

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        x, y = self.base[self.indices[i]]
        return x, self.mapping[int(y)]


def labels_of(ds: Dataset) -> list[int]:
    """A dataset's class labels, without loading its samples where it keeps them apart."""
    if isinstance(ds, TensorDataset):  # in-memory data: no need to load every sample
        return ds.tensors[1].flatten().tolist()
    if hasattr(ds, "labels"):  # images in folders, tokenized texts, a class subset
        labels = ds.labels
        return labels.tolist() if hasattr(labels, "tolist") else list(labels)
    if hasattr(ds, "indices") and hasattr(ds, "base"):  # a split's view of its dataset (SplitView)
        every = labels_of(ds.base)
        return every if ds.indices is None else [every[i] for i in ds.indices]
    return [int(ds[i][1]) for i in range(len(ds))]


def select_classes(splits: Splits, classes: list) -> Splits:
    """Keep `classes` (class names, or indices) in the order given."""
    info = splits.info
    if info.task != "classification":
        raise FtoolError("data.classes: only classification data has classes")
    names = info.class_names or [str(i) for i in range(info.num_outputs)]
    picked = []
    for c in classes:
        if str(c) in names:
            picked.append(names.index(str(c)))
        elif isinstance(c, int) and 0 <= c < len(names):
            picked.append(c)
        else:
            raise FtoolError(f"data.classes: no class {c!r}; this data has {', '.join(names)}")
    if len(set(picked)) != len(picked) or len(picked) < 2:
        raise FtoolError(f"data.classes: give at least 2 different classes, got {classes}")
    return _relabelled(splits, {old: new for new, old in enumerate(picked)}, [names[i] for i in picked])


def align_classes(splits: Splits, run_classes: list[str]) -> Splits:
    """Data with some of a trained run's classes, or all of them in another order (new data to
    evaluate, where a class may be missing), labelled as the run labels them: by name. Data with a
    class the run does not know is left as it is (the caller's check names it)."""
    names = splits.info.class_names
    if not run_classes or names == run_classes or not set(names) <= set(run_classes):
        return splits
    return _relabelled(splits, {i: run_classes.index(name) for i, name in enumerate(names)}, run_classes)


def _relabelled(splits: Splits, mapping: dict[int, int], class_names: list[str]) -> Splits:
    """Every split's samples of the labels in `mapping`, labelled as it maps them, of `class_names`."""
    subset = lambda ds: None if ds is None else ClassSubset(ds, mapping)  # noqa: E731
    info = dataclasses.replace(splits.info, num_outputs=len(class_names), class_names=list(class_names))
    return Splits(subset(splits.train), info, test=subset(splits.test), val=subset(splits.val), collate=splits.collate)
