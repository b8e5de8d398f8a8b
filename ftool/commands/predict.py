"""`ftool predict ckpt=<run> input=<...> [input=...] [output=table|json|csv] [text_column=<name>]`:
label new inputs with a run's model (a regression's: predict its values).

Inputs, read as the run read its data: a text model takes texts, text files (a text per line), folders
(a text per file), tables (CSV, TSV, JSON, Parquet: `text_column`, default the run's or `text`) or `-`
(standard input); an image model image files and folders; a model of feature vectors rows of numbers
("0.5,1.2,..."), files of such rows, NumPy files, or tables by the run's column names. A pattern
(`photos/*.jpg`) that matches files stands for them. JSON: {"input", "label", "probabilities"} per input
(regression: {"input", "prediction"}).
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import io
import json
import sys
from pathlib import Path

import torch

from ftool import components
from ftool.components import Trained
from ftool.config import check_reuse
from ftool.data.tabular import TABLE_SUFFIXES, encode_features, read_table
from ftool.data.text import PadBatch, encode, texts_cut, texts_in_folder
from ftool.data.transforms import make_transform
from ftool.engine.accelerator import select
from ftool.engine.progress import console, is_number, warn

BATCH = 64


def run(trained: Trained, input: tuple, output: str = "table", text_column: str = "") -> list[dict]:
    rc, info = trained.rc, trained.info
    check_reuse(trained.record["config"], rc, "predict", ("data.normalize",))
    acc = select(dataclasses.replace(rc.trainer, compile=False, devices=1))
    values = [match for value in input for match in (sorted(glob.glob(value, recursive=True)) or [value])]
    if info.text:
        pairs = [pair for value in values for pair in _texts(value, text_column or rc.data.args.get("text_column", "text"))]
        shown, inputs = [p[0] for p in pairs], _text_batches(trained, [p[1] for p in pairs])
    elif info.is_image:
        files = [f for value in values for f in _images(value)]
        shown, inputs = [str(f) for f in files], _image_batches(trained, files)
    else:
        rows = _vectors(values, info)
        shown, inputs = [r[0] for r in rows], _vector_batches(trained, [r[1] for r in rows])
    model = trained.model.to(acc.device)
    with torch.inference_mode(), acc.autocast():
        outputs = torch.cat([model(acc.to_device([batch])[0]).float().cpu() for batch in inputs])
    if info.task == "classification":
        names = info.class_names or [str(i) for i in range(info.num_outputs)]
        results = [{"input": given, "label": names[int(torch.tensor(probs).argmax())],
                    "probabilities": {name: round(p, 6) for name, p in zip(names, probs)}}
                   for given, probs in zip(shown, torch.softmax(outputs, dim=-1).tolist())]
    else:
        results = [{"input": given, "prediction": values[0] if len(values) == 1 else values}
                   for given, values in zip(shown, outputs.tolist())]
    _show(results, output, info)
    return results


def _path(value: str) -> Path | None:
    """The file or folder `value` names, or None (a text too long to be a file's name names none)."""
    path = Path(value).expanduser()
    try:
        return path if value and path.exists() else None
    except OSError:
        return None


def _texts(value: str, column: str) -> list[tuple[str, str]]:
    """(as shown, text) for each text `value` gives: a folder's files, a table's column, a file's lines,
    standard input's lines (`-`), else `value` itself."""
    path = _path(value)
    if path and path.is_dir():
        return [(str(p), text) for p, text in texts_in_folder(path)]
    if path and path.suffix.lower() in TABLE_SUFFIXES:
        texts = read_table(path)[column].dropna().astype(str)
        return [(t, t) for t in texts if t.strip()]
    if value == "-" or path:
        lines = sys.stdin.read() if value == "-" else path.read_text(encoding="utf-8-sig")
        return [(line.strip(), line.strip()) for line in lines.splitlines() if line.strip()]
    return [(value, value)]


def _images(value: str) -> list[Path]:
    """An image file, or the images in a folder and its subfolders (hidden ones skipped), sorted."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    path = Path(value).expanduser()
    if not path.is_dir():
        return [path]
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMG_EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(path).parts))


def _vectors(values: list[str], info) -> list[tuple[str, list[float]]]:
    """(as given, numbers) for each row `values` give: a NumPy file's rows, a table's (by the run's column
    names), a file's or standard input's lines, or the value itself; fields separated by commas or spaces.
    A table run's rows are encoded as it encoded its own (categories, fills)."""
    import numpy as np
    import pandas as pd

    features, rows = info.columns.get("features"), []
    for value in values:
        path = _path(value)
        if path and path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
            rows += [(f"{path.name}[{i}]", r) for i, r in enumerate(array.reshape(-1, info.input_shape[0]).tolist())]
        elif features and path and path.suffix.lower() in TABLE_SUFFIXES:
            rows += [(",".join(map(str, r)), r) for r in read_table(path)[features].values.tolist()]
        else:
            lines = sys.stdin.read() if value == "-" else path.read_text() if path else value
            for line in filter(str.strip, lines.splitlines()):
                cells = next(csv.reader([line.strip().strip("[]")])) if "," in line else line.strip("[] \n").split()
                if cells != features and (features or any(is_number(c) for c in cells)):  # (a header is no row)
                    rows.append((line.strip(), [c.strip() for c in cells]))
    if not features:
        return [(shown, [float(c) for c in cells]) for shown, cells in rows]
    frame = pd.DataFrame([cells for _, cells in rows], columns=features)
    encoded = encode_features(frame, info.columns.get("categorical", {}), info.columns.get("missing", {}), "input")
    return [(shown, numbers) for (shown, _), numbers in zip(rows, encoded.tolist())]


def _text_batches(trained, texts: list[str]):
    tokenizer = components.build_tokenizer(trained.rc)
    ids = encode(texts, tokenizer, trained.info.input_shape[0])
    if texts_cut(ids, trained.info.input_shape[0]):
        warn(f"{texts_cut(ids, trained.info.input_shape[0])}: the model reads no further, as in training")
    pad = PadBatch(tokenizer.pad_token_id or 0)
    return [pad([(t, 0) for t in ids[start:start + BATCH]])[0] for start in range(0, len(ids), BATCH)]


def _image_batches(trained, files: list[Path]):
    from ftool.data.vision import read_image

    transform = make_transform(trained.rc.data, trained.info, train=False, stored_dtype=torch.uint8)
    channels, *size = trained.info.input_shape
    for start in range(0, len(files), BATCH):
        yield torch.stack([transform(read_image(f, channels, size)) for f in files[start:start + BATCH]])


def _vector_batches(trained, rows: list[list[float]]):
    transform = make_transform(trained.rc.data, trained.info, train=False, stored_dtype=torch.float32)
    for start in range(0, len(rows), BATCH):
        batch = torch.tensor(rows[start:start + BATCH], dtype=torch.float32)
        yield transform(batch) if transform else batch


def _show(results: list[dict], output: str, info) -> None:
    """A table, or JSON or CSV on stdout (unwrapped: for a pipe)."""
    names = info.columns.get("target") if info.task == "regression" and info.num_outputs > 1 else ["prediction"]
    rows = [{"input": r["input"], "label": r["label"], **{f"p({n})": p for n, p in r["probabilities"].items()}}
            if "label" in r else {"input": r["input"], **dict(zip(names, r["prediction"] if isinstance(
                r["prediction"], list) else [r["prediction"]]))} for r in results]
    if output == "json":
        console.out(json.dumps(results, ensure_ascii=False, indent=2))
    elif output == "csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        console.out(text.getvalue(), end="")
    else:
        _print_table(results, rows)


def _print_table(results: list[dict], rows: list[dict], most: int = 5) -> None:
    """A column per class up to `most` classes; with more, the label's probability and the two next likeliest."""
    from rich.table import Table

    table = Table(title="predictions", title_justify="left")
    if results and "probabilities" in results[0] and len(results[0]["probabilities"]) > most:
        for column in ("input", "label", "p(label)", "next likeliest"):
            table.add_column(column, overflow="fold" if column == "input" else None)
        for r in results:
            ranked = sorted(r["probabilities"].items(), key=lambda item: -item[1])
            table.add_row(r["input"], r["label"], f"{ranked[0][1]:.4f}", ", ".join(f"{n} {p:.4f}" for n, p in ranked[1:3]))
    else:
        for column in rows[0]:
            table.add_column(column, overflow="fold" if column == "input" else None,
                             justify="left" if column in ("input", "label") else "right")
        for row in rows:
            table.add_row(*(v if isinstance(v, str) else f"{v:.6g}" for v in row.values()))
    console.print(table)
