"""In-memory datasets: a table of numbers (yours), scikit-learn's bundled digits, and synthetic data
for benchmarks and tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ftool.data import DataInfo, Splits, checked_shape
from ftool.data.tables import check_columns, read_rows, split_labels
from ftool.engine.progress import note, warn
from ftool.errors import FtoolError
from ftool.registry import DATASETS
from ftool.values import is_finite_number


@DATASETS.register("digits")
def digits() -> Splits:
    """scikit-learn's 1,797 8x8 handwritten digits (bundled with the package: works offline), read
    from its file as sklearn.datasets.load_digits reads it: importing sklearn takes over a second."""
    package = Path(importlib.util.find_spec("sklearn").submodule_search_locations[0])
    rows = torch.from_numpy(np.loadtxt(package / "datasets" / "data" / "digits.csv.gz", delimiter=","))
    images = (rows[:, :-1].reshape(-1, 1, 8, 8) / 16.0).float()
    labels = rows[:, -1].long()
    info = DataInfo("classification", (1, 8, 8), 10, [str(c) for c in range(10)],
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


@DATASETS.register("table")
def table(path: str, target: str | list | None = None, features: str | list | None = None, task: str = "auto",
          categorical: list | dict | None = None, missing: str | dict = "error", test_path: str | None = None,
          val_path: str | None = None, run_columns: dict | None = None) -> Splits:
    """Rows of a CSV, TSV, JSON or Parquet table: the `features` columns (default: every column but the
    target) predict the `target` column (default: the last; a list: several values), a value
    (regression) or a class (classification; `auto`: when a target is not a number). A feature
    column holding words (and those `categorical` names) is one-hot encoded by the values of the
    training table (`categorical` as {column: [values]}: by those). A `missing` value (empty, NA, ?)
    is an `error`, `drop`s its row, or is `fill`ed: a number with the training table's mean (a
    {column: value} map: with that value), a category as none of its values. Without test_path
    (val_path) a test (validation) split is held out of path. `run_columns`: a trained run's
    `DataInfo.columns`, to read a new table as the run read its own."""
    if task not in ("auto", "regression", "classification"):
        raise FtoolError(f"data.task: must be auto, regression or classification, got {task!r}")
    if not isinstance(missing, dict) and missing not in ("error", "drop", "fill"):
        raise FtoolError(f"data.missing: must be error, drop, fill or {{column: value}}, got {missing!r}")
    run_columns = run_columns or {}
    files = {split: Path(p).expanduser().resolve() for split, p in
             {"train": path, "test": test_path, "val": val_path}.items() if p}
    rows = {split: read_rows(file, _path_key(split)) for split, file in files.items()}
    for split, found in rows.items():
        if not found:
            raise FtoolError(f"{_path_key(split)}: {files[split]} holds no rows")
    header = list(rows["train"][0])
    inputs, targets = _pick_columns(header, target or run_columns.get("target"),
                                    features or run_columns.get("features"), files["train"])
    for split, file in files.items():
        check_columns(rows[split], file, _path_key(split), (*inputs, *targets),
                      "data.features and data.target name them")
    if missing == "drop":
        rows = {split: _complete_rows(found, (*inputs, *targets), files[split], _path_key(split))
                for split, found in rows.items()}
    if run_columns:  # encoded and filled as the run's own table was
        categories, fill = run_columns.get("categorical", {}), run_columns.get("missing", {})
    else:  # each column's numbers parsed once for what looks at them (None: not all numbers)
        parsed = {column: _numbers([row[column] for row in rows["train"]]) for column in inputs}
        categories = _categories(rows["train"], parsed, categorical)
        _warn_of_row_names(len(rows["train"]), parsed, categories)
        fill = _fill_values(rows["train"], parsed, categories, missing)
    x = {split: encode_features(found, inputs, categories, files[split], fill=fill) for split, found in rows.items()}
    # (a new table of one class of a run's two is still classes: the run's task)
    y, kind, names = _read_targets(rows, files, targets, run_columns.get("task", task))
    outputs = len(names) if kind == "classification" else len(targets)
    # Each feature scaled by the training table's spread (data.normalize), which SGD needs when
    # columns differ in scale (square metres and rooms); regression targets too (a price).
    mean, std = _spread(x["train"])
    target_mean, target_std = _spread(y["train"]) if kind == "regression" else (None, None)
    read_as = {"features": inputs, "target": targets, "task": kind,
               **({"categorical": categories} if categories else {}), **({"missing": fill} if fill else {})}
    if not run_columns:  # what was read, to check at a glance
        encoded = f"; one-hot: {', '.join(categories)}" if categories else ""
        if (features is None or target is None) and len(_named(header)) < len(header):
            encoded += "; left out: an unnamed column (pandas' index, or a separator ending each line)"
        what = f"{len(names)} classes" if kind == "classification" else "regression"
        columns = f"{len(inputs)} column{'s' if len(inputs) > 1 else ''}"
        note(f"data: {files['train'].name}: {', '.join(targets)} ({what}) from {columns}{encoded}")
    info = DataInfo(kind, (x["train"].shape[1],), outputs, names, mean=mean, std=std, target_mean=target_mean,
                    target_std=target_std, columns=read_as)
    datasets = {split: TensorDataset(x[split], y[split]) for split in files}
    return Splits(train=datasets["train"], info=info, test=datasets.get("test"), val=datasets.get("val"))


def _named(header: list[str]) -> list[str]:
    """The columns that may be defaults: an unnamed one is pandas' index (row numbers, first unless
    index=False), or the empty column a separator at each line's end makes."""
    return [c for c in header if c.strip()]


def _pick_columns(header: list[str], target, features, file: Path) -> tuple[list[str], list[str]]:
    """The feature and target columns: those named (Hydra reads data.target=5 as a number, a header's
    names are text), else the last column and every other one."""
    target, features = ([c] if isinstance(c, (str, int, float)) else c for c in (target, features))  # one column
    named = _named(header)
    targets = [str(c) for c in target] if target else named[-1:]
    inputs = [str(c) for c in features] if features else [c for c in named if c not in targets]
    both = [c for c in inputs if c in targets]
    if both or not inputs:
        raise FtoolError(f"data.features: {both[0]!r} is the target too" if both else
                         f"data.features: {file} has no column left to predict from (its columns: {', '.join(header)})")
    return inputs, targets


def _read_targets(rows: dict[str, list[dict]], files: dict[str, Path], targets: list[str],
                  task: str) -> tuple[dict[str, torch.Tensor], str, list[str]]:
    """Each split's targets, the task, and the class names: classes by name, or values."""
    labels = {split: [row[targets[0]] for row in found] for split, found in rows.items()}
    if task == "classification" or (task == "auto" and _are_classes(labels["train"], several=len(targets) > 1)):
        if len(targets) > 1:
            raise FtoolError(f"data.target: a classifier predicts one column, got {len(targets)} "
                             f"({', '.join(targets)})")
        for split, found in labels.items():
            _check_filled(found, files[split], targets[0])
        indices, names = split_labels(labels, {split: str(file) for split, file in files.items()})
        classes = {split: torch.tensor(found, dtype=torch.long) for split, found in indices.items()}
        return classes, "classification", names
    values = {split: table_numbers(found, targets, files[split]) for split, found in rows.items()}
    return values, "regression", []


def _spread(columns: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Each column's mean and std; a constant column (or a single row) gets std 1: it keeps its values."""
    std = columns.std(0) if len(columns) > 1 else torch.ones(columns.shape[1])  # (one row: torch would warn)
    std[std == 0] = 1.0
    return tuple(columns.mean(0).tolist()), tuple(std.tolist())


def _path_key(split: str) -> str:
    return "data.path" if split == "train" else f"data.{split}_path"


def _are_classes(labels: list, several: bool) -> bool:
    """Does a target column hold classes (task=auto)? Words do (setosa, versicolor), and so do two whole
    numbers (0/1, -1/+1: a regression of two values is a yes-or-no question), unless it is one of
    `several` targets (a classifier has one); other numbers are values."""
    numbers = _numbers(labels)
    if numbers is None:
        if not all(map(is_finite_number, labels)):
            return True
        numbers = np.array([float(v) for v in labels])
    return not several and len(np.unique(numbers)) == 2 and bool((numbers == np.round(numbers)).all())


def _check_filled(labels: list, file: Path, column: str) -> None:
    for n, label in enumerate(labels, 1):
        if not _filled(label):
            raise FtoolError(f"data: {file} row {n}: the target {column!r} is {label!r}, a missing value "
                             f"(data.missing=drop leaves such rows out)")


def _categories(rows: list[dict], parsed: dict[str, np.ndarray | None],
                categorical: list | dict | None) -> dict[str, list[str]]:
    """The feature columns to one-hot encode and their values: those `categorical` names or maps to
    its values, and those holding a word (a missing value, empty or NA, is not a word). `parsed`:
    each feature column's numbers, None where some cell is not one."""
    features = list(parsed)
    if isinstance(categorical, (str, int, float)):  # one column, as data.target
        categorical = [categorical]
    if not isinstance(categorical, dict) and not all(isinstance(c, (str, int, float)) for c in categorical or ()):
        raise FtoolError(f"data.categorical: give column names, as [city, zip], or {{column: [values]}}, "
                         f"got {categorical!r}")
    given = dict(categorical) if isinstance(categorical, dict) else dict.fromkeys(categorical or ())
    unknown = [column for column in given if str(column) not in features]
    if unknown:
        raise FtoolError(f"data.categorical: {unknown[0]!r} is not among the features ({', '.join(features)})")
    given = {str(column): values for column, values in given.items()}
    for column, values in given.items():
        if values is not None and (isinstance(values, (str, int, float)) or len(set(map(str, values))) < len(values)):
            raise FtoolError(f"data.categorical: {column}: {values!r}: give a list of different values, as "
                             f"{{{column}: [a, b, c]}}")
    worded = [c for c in features if parsed[c] is None and any(not is_finite_number(row[c]) and _filled(row[c])
                                                              for row in rows)]
    categories = {}
    for column in (c for c in features if c in given or c in worded):
        seen = sorted({_cell(row[column]) for row in rows if _filled(row[column])})
        categories[column] = [str(v) for v in given[column]] if given.get(column) else seen
    return categories


def _warn_of_row_names(count: int, parsed: dict[str, np.ndarray | None], categories: dict[str, list[str]]) -> None:
    """A feature that names the rows rather than describing them teaches the model nothing that holds
    for new rows: words with a value for most rows (names, as Titanic's) or numbers counting the rows
    (its PassengerId: 1, 2, ... each once)."""
    for column, numbers in parsed.items():
        if column in categories:
            values = categories[column]
            if len(values) > 20 and len(values) > count / 2:
                warn(f"data.categorical: {column!r} has {len(values)} values in {count} rows, each one an input "
                     f"of its own; if it names rows (an id, a name), leave it out of data.features")
        elif (numbers is not None and len(numbers) > 20 and (numbers == np.round(numbers)).all()
                and len(np.unique(numbers)) == len(numbers) == numbers.max() - numbers.min() + 1):
            warn(f"data.features: {column!r} counts the rows ({numbers.min():.0f} to {numbers.max():.0f}, each "
                 f"once): a row number describes no row; leave it out of data.features")


def _complete_rows(rows: list[dict], columns: tuple[str, ...], file: Path, key: str) -> list[dict]:
    """The rows with every one of `columns` filled (data.missing=drop), saying how many were left out."""
    complete = [row for row in rows if all(_filled(row[c]) for c in columns)]
    if not complete:
        raise FtoolError(f"{key}: {file} has no row with every column filled ({', '.join(columns)})")
    if len(complete) < len(rows):
        note(f"data: {file}: {len(rows) - len(complete)} of {len(rows)} rows left out for a missing value "
             f"(data.missing=drop)")
    return complete


def _fill_values(rows: list[dict], parsed: dict[str, np.ndarray | None], categories: dict,
                 missing: str | dict) -> dict[str, float | None]:
    """What a missing value becomes, by column: a number the training table's mean of its column
    (data.missing=fill) or the value given ({column: value}), a category none of its values (None);
    {} unless filling. `parsed`: as for _categories."""
    features = list(parsed)
    if isinstance(missing, dict):
        for column, value in missing.items():
            if str(column) not in features or str(column) in categories or not is_finite_number(value):
                raise FtoolError(f"data.missing: {column}: {value!r}: a number for a feature column of numbers "
                                 f"({', '.join(c for c in features if c not in categories)})")
        return {str(column): float(value) for column, value in missing.items()}
    if missing != "fill":
        return {}
    fill = {}
    for column, numbers in parsed.items():
        cells = [row[column] for row in rows]
        present = numbers if numbers is not None else [float(c) for c in cells if _filled(c) and is_finite_number(c)]
        fill[column] = None if column in categories else float(np.mean(present)) if len(present) else 0.0
    return fill


def encode_features(rows: list[dict], features: list[str], categories: dict[str, list[str]], file: Path | str,
                    what: str = "data", fill: dict[str, float | None] | None = None) -> torch.Tensor:
    """The model's inputs (rows, inputs): a number per numeric feature and, per categorical one, a 1
    in the column of the row's value (a value the training table lacked: all 0, with a warning). A
    missing value is `fill`'s for its column (a category: all 0), else an error naming it, as a
    numeric column's word is (`what`: the setting that gave the file). Column by column: a column of
    numbers converts at once (numpy parses 500,000 cells in a tenth of a second)."""
    fill = fill or {}
    blocks = []
    for column in features:
        cells = [row[column] for row in rows]
        if column in categories:
            blocks.append(_one_hot(cells, column, categories[column], column in fill, file, what))
        else:
            numbers = _numbers(cells)
            if numbers is None:  # a missing value or a word among them: cell by cell, to fill or name it
                numbers = np.array([_number(cell, n, column, fill, file, what) for n, cell in enumerate(cells, 1)])
            blocks.append(torch.from_numpy(numbers).float().reshape(-1, 1))
    return torch.cat(blocks, dim=1) if blocks else torch.zeros(len(rows), 0)


def _number(cell, n: int, column: str, fill: dict, file, what: str) -> float:
    if not _filled(cell):
        if column in fill:
            return fill[column]
        _check_cell(cell, n, column, file, what)
    if is_finite_number(cell):
        return float(cell)
    raise FtoolError(f"{what}: {file} row {n}: {column!r} is {cell!r}, not a number (data.features names the "
                     f"columns to use)")


def _one_hot(cells: list, column: str, values: list[str], filled: bool, file, what: str) -> torch.Tensor:
    """(rows, values): a 1 in the column of each row's value; a missing one (when `filled`) or one
    the training table lacked (a warning names them) is none of them."""
    index = {value: i for i, value in enumerate(values)}
    codes, unseen = [], set()
    for n, cell in enumerate(cells, 1):
        if not _filled(cell):
            if not filled:
                _check_cell(cell, n, column, file, what)
            codes.append(-1)
            continue
        code = index.get(_cell(cell), -1)
        if code < 0:
            unseen.add(_cell(cell))
        codes.append(code)
    if unseen:
        listed = ", ".join(sorted(unseen)[:5]) + (f", ... {len(unseen)} in all" if len(unseen) > 5 else "")
        warn(f"{what}: {file}: {column!r} has values the training table has not ({listed}); each is read as "
             f"none of its values")
    codes = torch.tensor(codes, dtype=torch.long)
    one_hot = torch.zeros(len(cells), len(values))
    known = codes >= 0
    one_hot[known.nonzero().flatten(), codes[known]] = 1.0
    return one_hot


def _check_cell(cell, n: int, column: str, file, what: str) -> None:
    """A missing value where nothing fills it: an error naming it."""
    if not _filled(cell):
        hint = ("data.missing=fill fills it, data.missing=drop leaves its row out" if what == "data" else
                "give a value: the run was trained without data.missing=fill")
        raise FtoolError(f"{what}: {file} row {n}: {column!r} is {cell!r}, a missing value ({hint})")


def _numbers(cells: list) -> np.ndarray | None:
    """The cells as float64 when every one is a finite number (no bool: JSON's true is a category),
    else None. numpy parses a column of text at once, where a loop of float() takes seconds."""
    if not set(map(type, cells)) <= {str, int, float}:  # (a bool is not an int here; None is missing)
        return None
    try:
        numbers = np.asarray(cells, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return numbers if numbers.ndim == 1 and np.isfinite(numbers).all() else None


def table_numbers(rows: list[dict], columns: list[str], file: Path) -> torch.Tensor:
    """The `columns` of every row as a float tensor (rows, columns): a regression's targets."""
    for column in columns:
        _check_filled([row[column] for row in rows], file, column)
    return encode_features(rows, columns, {}, file)


# What tables write for a missing value: pandas an empty cell, R NA, a database NULL, UCI's files ?.
MISSING = {"", "na", "n/a", "nan", "null", "none", "?"}


def _filled(cell) -> bool:
    return cell is not None and str(cell).strip().lower() not in MISSING


def _cell(cell) -> str:
    return str(cell).strip()
