"""In-memory datasets: a table of one's own (read and encoded with pandas), scikit-learn's bundled
digits, and synthetic data for benchmarks and tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ftool.errors import ConfigError
from ftool.data import DataInfo, Splits
from ftool.registry import DATASETS


@DATASETS.register("digits")
def digits() -> Splits:
    """scikit-learn's 1,797 8x8 handwritten digits (bundled with the package: works offline), read from
    its file as load_digits reads it: importing sklearn.datasets takes over a second."""
    package = Path(importlib.util.find_spec("sklearn").submodule_search_locations[0])
    rows = torch.from_numpy(np.loadtxt(package / "datasets" / "data" / "digits.csv.gz", delimiter=","))
    images = (rows[:, :-1].reshape(-1, 1, 8, 8) / 16.0).float()
    info = DataInfo("classification", (1, 8, 8), 10, [str(c) for c in range(10)],
                    mean=(images.mean().item(),), std=(images.std().item(),))
    return Splits(train=TensorDataset(images, rows[:, -1].long()), info=info)


@DATASETS.register("synthetic")
def synthetic(shape: list = (3, 32, 32), num_classes: int = 10, train_size: int = 8192,
              test_size: int = 1024, seed: int = 0) -> Splits:
    """Standard-normal inputs labelled by a fixed random linear teacher: learnable, any shape."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(train_size + test_size, *shape, generator=g)
    y = (x.flatten(1) @ torch.randn(x[0].numel(), num_classes, generator=g)).argmax(1)
    info = DataInfo("classification", tuple(shape), num_classes, [str(c) for c in range(num_classes)])
    return Splits(train=TensorDataset(x[:train_size], y[:train_size]), info=info,
                  test=TensorDataset(x[train_size:], y[train_size:]))


@DATASETS.register("regression")
def regression(num_features: int = 10, num_outputs: int = 1, train_size: int = 1000,
               test_size: int = 200, noise: float = 0.1, seed: int = 0) -> Splits:
    """y = W x + b + noise with x ~ N(0, I): the seed's linear-regression setup."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(train_size + test_size, num_features, generator=g)
    w, b = torch.randn(num_features, num_outputs, generator=g), torch.randn(num_outputs, generator=g)
    y = x @ w + b + noise * torch.randn(len(x), num_outputs, generator=g)
    info = DataInfo("regression", (num_features,), num_outputs)
    return Splits(train=TensorDataset(x[:train_size], y[:train_size]), info=info,
                  test=TensorDataset(x[train_size:], y[train_size:]))


TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def read_table(path: Path):
    """A table with a header as pandas reads it: CSV, TSV (quoting nothing, as GLUE's files), JSON lines
    or a JSON list of rows, Parquet."""
    import csv

    import pandas as pd

    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif suffix in (".json", ".jsonl"):
        lines = suffix == ".jsonl" or not Path(path).read_text(encoding="utf-8-sig").lstrip().startswith("[")
        frame = pd.read_json(path, lines=lines, dtype=False)
    else:
        tsv = suffix == ".tsv"
        frame = pd.read_csv(path, sep="\t" if tsv else ",", quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL,
                            encoding="utf-8-sig", skipinitialspace=True)
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def labels_to_indices(labels) -> tuple[list[int], list[str]]:
    """Labels as given -> (indices, class names). Whole numbers are classes in numeric order, named by
    their number (1-5 stars: 5 classes, no empty class 0); other labels are names, in text order."""
    values = [str(v).strip() for v in labels]
    try:
        numbers = [float(v) for v in values]
        whole = all(n.is_integer() for n in numbers)
    except ValueError:
        whole = False
    keys = [int(n) for n in numbers] if whole else values
    names = sorted(set(keys))
    index = {name: i for i, name in enumerate(names)}
    return [index[k] for k in keys], [str(n) for n in names]


def labels_by_split(columns: dict[str, list]) -> tuple[dict[str, list[int]], list[str]]:
    """Each split's labels as indices of one class numbering (labels_to_indices over all of them)."""
    indices, names = labels_to_indices([v for column in columns.values() for v in column])
    by_split, at = {}, 0
    for split, column in columns.items():
        by_split[split], at = indices[at:at + len(column)], at + len(column)
    return by_split, names


def encode_features(frame, categories: dict, fill: dict, where: str) -> torch.Tensor:
    """The model's inputs (rows, inputs): each numeric column as it is, each categorical one as a 1 in the
    column of its value (a value the training table lacked, or a missing one: all 0); missing numbers
    filled by `fill`, else an error."""
    import pandas as pd

    frame = frame.fillna({c: v for c, v in fill.items() if v is not None})
    blocks = []
    for column in frame.columns:
        if column in categories:
            cells = frame[column].map(lambda v: None if pd.isna(v) else str(v).strip())
            blocks.append(pd.get_dummies(pd.Categorical(cells, categories=[str(v) for v in categories[column]]))
                          .to_numpy(np.float32))
        else:
            numbers = pd.to_numeric(frame[column]).to_numpy(np.float32).reshape(-1, 1)
            if np.isnan(numbers).any():
                raise ConfigError(f"data.missing: {where}: column {column!r} has {int(np.isnan(numbers).sum())} "
                                  f"missing values; data.missing=fill fills them, data.missing=drop drops their rows")
            blocks.append(numbers)
    return torch.from_numpy(np.concatenate(blocks, axis=1) if blocks else np.zeros((len(frame), 0), np.float32))


def _spread(columns: torch.Tensor) -> tuple[tuple, tuple]:
    """Each column's mean and std (a constant column's std is 1: it keeps its values)."""
    std = columns.std(0) if len(columns) > 1 else torch.ones(columns.shape[1])
    return tuple(columns.mean(0).tolist()), tuple(torch.where(std == 0, 1.0, std).tolist())


def _read_as(frame, inputs: list[str], categorical, missing) -> tuple[dict, dict]:
    """(categories, fill values) learned from the training table: the columns of words and those named
    categorical (their values: the table's or those given), and what fills a missing value."""
    import pandas as pd

    given = dict(categorical) if isinstance(categorical, dict) else dict.fromkeys(
        [categorical] if isinstance(categorical, str) else categorical or [])
    given = {str(k): v for k, v in given.items()}
    categories = {c: given.get(c) or sorted(frame[c].dropna().astype(str).str.strip().unique())
                  for c in inputs if c in given or not pd.api.types.is_numeric_dtype(frame[c])}
    if isinstance(missing, dict):
        return categories, {str(k): v for k, v in missing.items()}
    fill = {c: None if c in categories else float(frame[c].mean()) for c in inputs} if missing == "fill" else {}
    return categories, fill


@DATASETS.register("table")
def table(path: Path, target: str | list | None = None, features: str | list | None = None,
          task: Literal["auto", "regression", "classification"] = "auto", categorical: list | dict | str | None = None,
          missing: Literal["error", "drop", "fill"] | dict = "error", test_path: Path | None = None,
          val_path: Path | None = None, run_columns: dict | None = None) -> Splits:
    """Rows of a CSV, TSV, JSON or Parquet table: the `features` columns (default: every other) predict
    the `target` column (default: the last; a list: several values): a class (`auto`: when the target
    holds words or two whole numbers) or values (regression). Columns of words, and those `categorical`
    names, are one-hot encoded by the training table's values; a `missing` value is an error, drops its
    row, or is filled (the column's mean; a category: none). `run_columns`: a trained run's description,
    to read a new table as the run read its own."""
    import pandas as pd

    columns = run_columns or {}
    frames = {s: read_table(p) for s, p in (("train", path), ("test", test_path), ("val", val_path)) if p}
    header = [c for c in frames["train"].columns if not c.startswith("Unnamed:")]  # (pandas' saved index)
    named = lambda given: [str(c) for c in ([given] if isinstance(given, (str, int)) else given)]  # noqa: E731
    targets = named(target or columns.get("target") or header[-1:])
    inputs = named(features or columns.get("features") or [c for c in header if c not in targets])
    if missing == "drop":
        frames = {s: f.dropna(subset=inputs + targets) for s, f in frames.items()}
    categories, fill = ((columns.get("categorical", {}), columns.get("missing", {})) if columns
                        else _read_as(frames["train"], inputs, categorical, missing))
    x = {s: encode_features(f[inputs], categories, fill, f"{s} table") for s, f in frames.items()}
    labels = frames["train"][targets[0]]
    kind = columns.get("task") or task
    if kind == "auto":  # words are classes, and so are two whole numbers (0/1: a yes-or-no question)
        numeric = pd.api.types.is_numeric_dtype(labels)
        two_whole = numeric and labels.nunique() == 2 and bool((labels == labels.round()).all())
        kind = "classification" if len(targets) == 1 and (not numeric or two_whole) else "regression"
    if kind == "classification":
        indices, names = labels_to_indices([v for f in frames.values() for v in f[targets[0]]])
        at = np.cumsum([0, *(len(f) for f in frames.values())])
        y = {s: torch.tensor(indices[at[i]:at[i + 1]]) for i, s in enumerate(frames)}
    else:
        names = []
        y = {s: torch.tensor(f[targets].to_numpy(np.float32)) for s, f in frames.items()}
    mean, std = _spread(x["train"])
    target_mean, target_std = _spread(y["train"]) if kind == "regression" else (None, None)
    read_as = {"features": inputs, "target": targets, "task": kind,
               **({"categorical": categories} if categories else {}), **({"missing": fill} if fill else {})}
    info = DataInfo(kind, (x["train"].shape[1],), len(names) if names else len(targets), names, mean=mean, std=std,
                    target_mean=target_mean, target_std=target_std, columns=read_as)
    if not columns:
        from ftool.engine.progress import note

        note(f"data: {Path(path).name}: {', '.join(targets)} ({f'{len(names)} classes' if names else kind}) from "
             f"{len(inputs)} columns{'; one-hot: ' + ', '.join(categories) if categories else ''}")
    datasets = {s: TensorDataset(x[s], y[s]) for s in frames}
    return Splits(train=datasets["train"], info=info, test=datasets.get("test"), val=datasets.get("val"))
