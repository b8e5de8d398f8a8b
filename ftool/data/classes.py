"""`data.classes`: train on some of a dataset's classes, relabelled 0..k-1 (pretrain on digits 0-4,
fine-tune on 5-9); and new data given to `ftool eval`, labelled by a trained run's classes by name."""

from __future__ import annotations

import dataclasses

from torch.utils.data import Dataset, TensorDataset

from ftool.errors import ConfigError
from ftool.data import Splits


class ClassSubset(Dataset):
    """The samples of `base` whose label is in `mapping`, with the label mapped."""

    def __init__(self, base: Dataset, mapping: dict[int, int]):
        self.base, self.mapping = base, mapping
        every = labels_of(base)
        self.indices = [i for i, y in enumerate(every) if y in mapping]
        self.labels = [mapping[every[i]] for i in self.indices]

    def lengths(self) -> list[int]:  # text: data.group_by_length groups the kept samples by theirs
        every = self.base.lengths()
        return [every[i] for i in self.indices]

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        x, y = self.base[self.indices[i]]
        return x, self.mapping[int(y)]


def labels_of(ds: Dataset) -> list[int]:
    """A dataset's class labels, without loading its samples where it keeps them apart."""
    if isinstance(ds, TensorDataset):
        return ds.tensors[1].flatten().tolist()
    if hasattr(ds, "labels"):
        return ds.labels.tolist() if hasattr(ds.labels, "tolist") else list(ds.labels)
    if hasattr(ds, "indices") and hasattr(ds, "base"):  # a split's view (SplitView)
        every = labels_of(ds.base)
        return every if ds.indices is None else [every[i] for i in ds.indices]
    return [int(ds[i][1]) for i in range(len(ds))]


def select_classes(splits: Splits, classes: list) -> Splits:
    """Keep `classes` (class names, or indices) in the order given."""
    names = splits.info.class_names or [str(i) for i in range(splits.info.num_outputs)]
    picked = [names.index(str(c)) if str(c) in names else c for c in classes]
    if not all(isinstance(i, int) and 0 <= i < len(names) for i in picked) or len(set(picked)) < 2:
        raise ConfigError(f"data.classes: give 2 or more of the classes {', '.join(names)}; got {classes}")
    return _relabelled(splits, {old: new for new, old in enumerate(picked)}, [names[i] for i in picked])


def align_classes(splits: Splits, run_classes: list[str]) -> Splits:
    """Data with some of a trained run's classes, or all in another order, labelled as the run labels
    them: by name. A class the run does not know is an error: it would be scored as another."""
    names = splits.info.class_names
    if not run_classes or names == run_classes:
        return splits
    unknown = [n for n in names if n not in run_classes]
    if unknown:
        raise ConfigError(f"data: classes {', '.join(unknown)} are not the run's ({', '.join(run_classes)})")
    return _relabelled(splits, {i: run_classes.index(name) for i, name in enumerate(names)}, run_classes)


def _relabelled(splits: Splits, mapping: dict[int, int], class_names: list[str]) -> Splits:
    subset = lambda ds: None if ds is None else ClassSubset(ds, mapping)  # noqa: E731
    info = dataclasses.replace(splits.info, num_outputs=len(class_names), class_names=list(class_names))
    return Splits(subset(splits.train), info, test=subset(splits.test), val=subset(splits.val), collate=splits.collate)
