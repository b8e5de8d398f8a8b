"""A trained run, ready to use on new inputs (`predict`, `export`): its model rebuilt from the run's
config and loaded from a checkpoint, and its data's description (classes, input shape,
normalization) from summary.json, so no dataset is needed."""

from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ftool import components
from ftool.config import RunConfig, validate
from ftool.data import DataInfo
from ftool.data.tables import TABLE_SUFFIXES, check_columns, read_rows, read_text
from ftool.data.text import rows_with_text, texts_in_folder
from ftool.engine import checkpoint
from ftool.engine.progress import warn
from ftool.errors import FtoolError, one_line
from ftool.rundir import RunDir, locate_checkpoint, read_summary
from ftool.values import is_number


@dataclass
class Trained:
    run: RunDir
    weights: Path  # the checkpoint file loaded
    rc: RunConfig
    info: DataInfo
    model: nn.Module  # on the CPU, in eval mode

    def tokenizer(self):
        return components.build_tokenizer(self.rc)


def data_info(run: RunDir) -> DataInfo:
    data = (read_summary(run) or {}).get("data")
    if not data or "text" not in data:
        raise FtoolError(f"ckpt: {run.summary} does not describe the run's data (a run from an older ftool, or "
                         f"one that failed before training); train it again with this version")
    return DataInfo.from_json(data)


def load_trained(cfg, ckpt: str) -> Trained:
    run, weights = locate_checkpoint(ckpt)
    rc = validate(cfg)
    info = data_info(run)
    model = components.build_model(rc, info, pretrained=False)  # the checkpoint brings every weight
    checkpoint.load_into(model, weights)
    return Trained(run, weights, rc, info, model.eval())


def read_image(path: Path, info: DataInfo) -> torch.Tensor:
    """An image file as the model's input (C, H, W) uint8, read as in training."""
    from ftool.data.image_files import load_image

    channels, height, width = info.input_shape
    return load_image(path, channels, (height, width), "input")


def _existing(value: str, kind: str = "file") -> Path | None:
    """The file (`kind` "dir": folder) that `value` names, or None where it names none: a text or
    numbers to predict on, which may be longer than a file name can be."""
    path = Path(value).expanduser()
    try:
        return path if (path.is_dir() if kind == "dir" else path.is_file()) else None
    except OSError:  # the name is too long for a file: it is a text
        return None


def expand_patterns(values: tuple[str, ...], image: bool) -> list[str]:
    """`values` with each file pattern (`photos/*.jpg`, `reviews/**/*.txt`: quoted, or as part of
    input=... where the shell leaves it) replaced by the files it matches, sorted. For text and
    numbers, only a word that looks like a path is a pattern: "what a film?" is a text."""
    expanded = []
    for value in values:
        path_like = image or (not any(c.isspace() for c in value)
                              and ("/" in value or Path(value).suffix.lower() in _TEXT_FILE_SUFFIXES))
        if not (path_like and glob.has_magic(value)) or _existing(value) or _existing(value, "dir"):
            expanded.append(value)
            continue
        matches = sorted(glob.glob(os.path.expanduser(value), recursive=True))
        if not matches:
            raise FtoolError(f"input: {value!r} matches no file")
        expanded += matches
    return expanded


def image_files(value: str) -> list[Path]:
    """An image file, or the images in a folder and its subfolders (a tree of class folders, as
    `data=imagefolder` reads, hidden ones skipped as it skips them), sorted."""
    from ftool.data import IMAGE_SUFFIXES, unread_images
    from ftool.data.image_files import is_visible_image

    folder = _existing(value, "dir")
    if folder:
        files = [p for p in folder.rglob("*") if p.is_file()]
        found = sorted(p for p in files if is_visible_image(p, folder))
        unread = unread_images(files)
        if not found:
            raise FtoolError(f"input: {folder} has no image files ({' '.join(IMAGE_SUFFIXES)}) in it or its "
                             f"subfolders" + (f"; it holds {unread}" if unread else ""))
        if unread:
            warn(f"input: {folder}: left out {unread}")
        return found
    file = _existing(value)
    if not file:
        raise FtoolError(f"input: {value!r} is not an image file or folder; this run's model takes images")
    return [file]


# Suffixes of the text files predict reads: a missing one is a mistyped path, not a text to label.
_TEXT_FILE_SUFFIXES = (".txt", ".text", *TABLE_SUFFIXES)


def _file_lines(value: str) -> list[tuple[str, str]] | None:
    """(where, line) for each non-blank line of the file `value` names (`-`: standard input); None
    when it names no file (the value is an input itself)."""
    path = None if value == "-" else _existing(value)
    if value != "-" and not path:
        return None
    text = read_text(path, "input")  # (None: standard input)
    source = "standard input" if value == "-" else str(path)
    return [(f"{source} line {n}", line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def text_inputs(value: str, column: str) -> list[tuple[str, str]]:
    """(as shown, text) for each text `value` gives: a table's (CSV, TSV, JSON, Parquet) `column`, a
    text file's lines, standard input's lines for `-`, a folder's files (a text per file, shown by
    its path, as data=text_files reads class folders), else `value` itself."""
    if not value.strip():
        raise FtoolError("input: an empty text; give a text to label, a file of texts (one per line) or - "
                         "for standard input")
    folder = _existing(value, "dir")
    if folder:
        return [(str(path), text) for path, text in texts_in_folder(folder, "input")]
    path = _existing(value)
    if path and path.suffix.lower() in TABLE_SUFFIXES:
        rows = read_rows(path, "input")
        check_columns(rows, path, "input", (column,), "text_column=<name> names the column of texts; "
                      "a file of one text per line without a header is read as lines when named .txt")
        return [(str(row[column]),) * 2 for row in rows_with_text(rows, column)]
    lines = _file_lines(value)
    if lines is not None:
        return [(line, line) for _, line in lines]
    if not any(c.isspace() for c in value) and Path(value).suffix.lower() in _TEXT_FILE_SUFFIXES:
        raise FtoolError(f"input: {value} does not exist; give an existing file of texts, one per line, "
                         f"or the text itself")
    return [(value, value)]


def vector_inputs(value: str, size: int, columns: dict | None = None) -> list[tuple[str, list[float]]]:
    """(as given, numbers) for a model that takes `size` numbers: `value` itself ("0.5,1.2,..."), a
    NumPy file (.npy: an input per row), or a file (`-`: standard input) with one input per line,
    numbers separated by commas or spaces. A
    file's first line without a number in it is a CSV header, and skipped. A run trained on a table
    (`columns`: how it read its table, DataInfo.columns) reads a table with a header by its features'
    names, whatever else it holds (other names are an error, not numbers read by position), and rows
    of its features' values separated by commas, encoded as it encoded its own."""
    columns = columns or {}
    features, categories = columns.get("features", []), columns.get("categorical")
    path = _existing(value) if features and value != "-" else None
    if path and path.suffix.lower() in TABLE_SUFFIXES:
        rows = read_rows(path, "input")
        headed = rows and not all(is_number(str(name)) for name in rows[0])  # (else its first row is numbers)
        if path.suffix.lower() in (".jsonl", ".json") or headed:
            check_columns(rows, path, "input", tuple(features), "the run's model takes these columns")
            return _encoded(rows, columns, path)
    array_file = _existing(value) if value.lower().endswith(".npy") else None
    if array_file:
        if categories:
            raise FtoolError(f"input: {value}: a NumPy file holds numbers by position, and this run's table had "
                             f"columns of words ({', '.join(categories)}); give a table with a header (CSV, TSV, JSON)")
        return _array_rows(array_file, size)
    lines = _file_lines(value)
    if categories:  # words among the values: a row's fields by position, as the run's features
        given = [(where, next(csv.reader([line]))) for where, line in
                 (lines if lines is not None else [(repr(value), value)])]
        rows = []
        for where, fields in given[1:] if lines and given[0][1] == list(features) else given:  # (a header)
            if len(fields) != len(features):
                raise FtoolError(f"input: {where} has {len(fields)} values; this run's model takes {len(features)} "
                                 f"({', '.join(features)})")
            rows.append(dict(zip(features, fields)))
        return _encoded(rows, columns, "standard input" if value == "-" else value)
    if lines and not any(is_number(field) for field in _fields(lines[0][1])):
        lines = lines[1:]
    rows = []
    for where, line in lines if lines is not None else [(repr(value), value)]:
        try:
            numbers = [float(x) for x in _fields(line)]
        except ValueError:
            what = f"{where}: {line!r} is not numbers" if lines is not None else f"{where} is neither a file nor numbers"
            raise FtoolError(f"input: {what} separated by commas; this run's model takes {size} numbers") from None
        if len(numbers) != size:
            raise FtoolError(f"input: {where} has {len(numbers)} numbers; this run's model takes {size}")
        rows.append((line, numbers))
    return rows


def _array_rows(path: Path, size: int) -> list[tuple[str, list[float]]]:
    """The inputs in a NumPy file (np.save): one of `size` numbers, or one per row. Read without
    pickles (allow_pickle=False), which could run code."""
    import numpy as np

    try:
        array = np.load(path, allow_pickle=False)
        rows = array.reshape(1 if array.ndim == 1 else len(array), -1).astype(np.float64)
    except (ValueError, TypeError, OSError) as e:
        raise FtoolError(f"input: {path} is not a NumPy array of numbers ({one_line(e)})") from None
    if rows.shape[1] != size:
        raise FtoolError(f"input: {path} holds an array of shape {array.shape}, rows of {rows.shape[1]} numbers; "
                         f"this run's model takes {size}")
    return [(f"{path.name}[{i}]", row.tolist()) for i, row in enumerate(rows)]


def _fields(line: str) -> list[str]:
    """A row's numbers as given: separated by commas or spaces, in brackets or not ([0.5, 1.2] as a
    Python or JSON list prints, [0.5 1.2] as NumPy prints an array)."""
    return line.strip().removeprefix("[").removesuffix("]").replace(",", " ").split()


def _encoded(rows: list[dict], columns: dict, where) -> list[tuple[str, list[float]]]:
    from ftool.data.tabular import encode_features

    features = columns["features"]
    encoded = encode_features(rows, features, columns.get("categorical", {}), where, "input",
                              fill=columns.get("missing")).tolist()
    return [(",".join(str(row[f]) for f in features), numbers) for row, numbers in zip(rows, encoded)]
