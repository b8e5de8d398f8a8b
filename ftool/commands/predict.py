"""`ftool predict ckpt=<run> input=<text|file> [input=...] [output=table|json|csv]`: label new inputs.

Text models take sentences, text files with one sentence per line, folders of text files (a text
per file), or tables (CSV, TSV, JSON, Parquet) with a column of texts (`text_column`; default: the
run's, else `text`); image models take image
files or folders of images; models of feature vectors take rows of numbers ("0.5,1.2,..."), or
files of such rows. Prints a table of label and class probabilities (regression: the predicted
values), with output=json a JSON list: {"input", "label", "probabilities": {class: p}} per
input (regression: {"input", "prediction"}), or with output=csv the same as CSV rows.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path

import torch
from omegaconf import DictConfig

from ftool.data.text import PadBatch, encode, texts_cut
from ftool.data.transforms import make_transform
from ftool.engine.accelerator import Accelerator, select
from ftool.engine.progress import EvalProgress, console, warn
from ftool.errors import FtoolError
from ftool.inference import (Trained, expand_patterns, image_files, load_trained, read_image, text_inputs,
                             vector_inputs)

BATCH = 64
TABLE_CLASSES = 5  # more classes than this: the table shows the likeliest few, not a column each
TABLE_RUNNERS_UP = 2


def run(cfg: DictConfig, run_dir: Path, ckpt: str, input: tuple, output: str, text_column: str) -> list[dict]:
    if output not in ("table", "json", "csv"):
        raise FtoolError(f"output: must be table, json or csv, got {output!r}")
    trained = load_trained(cfg, ckpt)
    info = trained.info
    if text_column and not info.text:
        raise FtoolError("text_column: names a table's column of texts, and this run's model takes no text")
    # The run's device and precision (a GPU where there is one); predict does not compile the model.
    acc = select(dataclasses.replace(trained.rc.trainer, compile=False), training=False)
    input = expand_patterns(input, info.is_image)
    if info.text:
        # a table's column of texts: the one the run trained on (text_csv's), else `text`
        column = text_column or trained.rc.data.args.get("text_column", "text")
        pairs = [pair for value in input for pair in text_inputs(value, column)]
        shown = [given for given, _ in pairs]
        batches = _text_batches(trained, [text for _, text in pairs])
    elif info.is_image:
        files = [f for value in input for f in image_files(value)]
        shown = [str(f) for f in files]
        batches = _image_batches(trained, files)
    elif len(info.input_shape) == 1:
        # a table run reads tables by its columns' names, and encodes them as it trained
        rows = [row for value in input for row in vector_inputs(value, info.input_shape[0], info.columns)]
        shown = [given for given, _ in rows]
        batches = _vector_batches(trained, [numbers for _, numbers in rows])
    else:
        raise FtoolError(f"predict: takes texts, images or rows of numbers; this run's model takes tensors of "
                         f"shape {list(info.input_shape)}")
    if not shown:
        raise FtoolError(f"input: {', '.join(input)}: nothing to predict (the file, folder or standard input is empty)")
    # JSON or CSV on a pipe gets no progress lines: they would mix with it on stdout.
    progress = EvalProgress(output == "table" or console.is_terminal, "predict", -(-len(shown) // BATCH))
    outputs = _outputs(trained.model.to(acc.device), batches, acc, progress)
    if info.task == "classification":
        names = info.class_names or [str(i) for i in range(info.num_outputs)]
        results = [{"input": given, "label": names[max(range(len(probs)), key=probs.__getitem__)],
                    "probabilities": {name: round(p, 6) for name, p in zip(names, probs)}}
                   for given, probs in zip(shown, torch.softmax(outputs, dim=-1).tolist())]
    else:  # regression: the value, or the list of values for several outputs
        results = [{"input": given, "prediction": values[0] if len(values) == 1 else values}
                   for given, values in zip(shown, outputs.tolist())]
    if output == "json":
        console.out(json.dumps(results, ensure_ascii=False, indent=2))  # not wrapped; a closed pipe is handled
        return results
    if output == "csv":
        console.out(_csv(results, _value_names(info)), end="")
        return results
    if info.task == "classification":
        _print_labels(results, names)
    else:
        _print_values(results, _value_names(info))
    console.print(f"checkpoint: {trained.weights} ({acc.device.type}, precision {acc.precision})", soft_wrap=True)
    return results


@torch.inference_mode()
def _outputs(model: torch.nn.Module, batches: Iterator, acc: Accelerator, progress: EvalProgress) -> torch.Tensor:
    """The model's outputs for every batch, as float32 on the CPU."""
    outputs = []
    try:
        for batch in batches:
            (inputs,) = acc.to_device([batch])
            with acc.autocast():
                outputs.append(model(inputs).float().cpu())
            progress.advance()
    finally:
        progress.close()
    return torch.cat(outputs)


def _text_batches(trained: Trained, texts: list[str]) -> Iterator[torch.Tensor]:
    tokenizer = trained.tokenizer()
    pad = PadBatch(tokenizer.pad_token_id or 0)
    ids = encode(texts, tokenizer, trained.info.input_shape[0])
    cut = texts_cut(ids, trained.info.input_shape[0])
    if cut:  # (on stderr: output=json stays JSON)
        warn(f"{cut}: the model reads no further, as in training")
    for start in range(0, len(ids), BATCH):
        yield pad([(t, 0) for t in ids[start:start + BATCH]])[0]


def _image_batches(trained: Trained, files: list[Path]) -> Iterator[torch.Tensor]:
    transform = make_transform(trained.rc.data, trained.info, train=False, stored_dtype=torch.uint8)
    for start in range(0, len(files), BATCH):
        images = [read_image(f, trained.info) for f in files[start:start + BATCH]]
        yield torch.stack([transform(x) if transform else x.float() for x in images])


def _vector_batches(trained: Trained, rows: list[list[float]]) -> Iterator[torch.Tensor]:
    transform = make_transform(trained.rc.data, trained.info, train=False, stored_dtype=torch.float32)
    for start in range(0, len(rows), BATCH):
        batch = torch.tensor(rows[start:start + BATCH], dtype=torch.float32)
        yield transform(batch) if transform else batch


def _value_names(info) -> list[str]:
    """A regression's output columns: `prediction`, or one per target (a table's by its column names)."""
    if info.num_outputs == 1:
        return ["prediction"]
    return info.columns.get("target") or [f"prediction[{i}]" for i in range(info.num_outputs)]


def _csv(results: list[dict], value_names: list[str]) -> str:
    text = io.StringIO()
    rows = [_csv_row(r, value_names) for r in results]
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def _csv_row(result: dict, value_names: list[str]) -> dict:
    """input, label, p(<class>) per class; regression: input and a value per output (`value_names`)."""
    if "probabilities" in result:
        return {"input": result["input"], "label": result["label"],
                **{f"p({name})": p for name, p in result["probabilities"].items()}}
    values = result["prediction"]
    return {"input": result["input"], **dict(zip(value_names, values if isinstance(values, list) else [values]))}


def _print_values(results: list[dict], value_names: list[str]) -> None:
    from rich.table import Table

    table = Table(title="predictions", title_justify="left")
    table.add_column("input", overflow="fold")
    for name in value_names:
        table.add_column(name, justify="right", style="bold")
    for r in results:
        values = r["prediction"] if len(value_names) > 1 else [r["prediction"]]
        table.add_row(r["input"], *(f"{v:.6g}" for v in values))
    console.print(table)


def _print_labels(results: list[dict], names: list[str]) -> None:
    """A column per class when they fit; with more classes, the label's probability and the
    next likeliest classes (output=json has every probability)."""
    from rich.table import Table

    table = Table(title="predictions", title_justify="left")
    table.add_column("input", overflow="fold")
    table.add_column("label", style="bold")
    per_class = len(names) <= TABLE_CLASSES
    if per_class:
        for name in names:
            table.add_column(f"p({name})", justify="right")
    else:
        table.add_column("p(label)", justify="right")
        table.add_column("next likeliest")
    for r in results:
        p = r["probabilities"]
        if per_class:
            shown = [f"{p[n]:.4f}" for n in names]
        else:
            ranked = sorted(p, key=p.__getitem__, reverse=True)
            shown = [f"{p[ranked[0]]:.4f}", ", ".join(f"{n} {p[n]:.4f}" for n in ranked[1:TABLE_RUNNERS_UP + 1])]
        table.add_row(r["input"], r["label"], *shown)
    console.print(table)
