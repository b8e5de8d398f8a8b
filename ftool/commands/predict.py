"""`ftool predict ckpt=<run> input=<text|file> [input=...] [output=table|json]`: label new inputs.

Text models take sentences, or text files with one sentence per line; image models take image
files or folders of images. Prints a table of label and class probabilities, or with
output=json a JSON list: {"input", "label", "probabilities": {class: p}} per input.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import DictConfig

from ftool.data.text import PadBatch, encode
from ftool.data.transforms import make_transform
from ftool.engine.progress import console
from ftool.errors import FtoolError
from ftool.inference import Trained, image_files, load_trained, read_image, text_inputs

BATCH = 64


def run(cfg: DictConfig, run_dir: Path, ckpt: str, input: tuple, output: str) -> list[dict]:
    if output not in ("table", "json"):
        raise FtoolError(f"output: must be table or json, got {output!r}")
    trained = load_trained(cfg, ckpt)
    info = trained.info
    if info.task != "classification":
        raise FtoolError("predict: labels come from a classification run; this run is a regression")
    if info.text:
        shown = [t for value in input for t in text_inputs(value)]
        outputs = _predict_texts(trained, shown)
    elif info.is_image:
        files = [f for value in input for f in image_files(value)]
        shown = [str(f) for f in files]
        outputs = _predict_images(trained, files)
    else:
        raise FtoolError(f"predict: takes text or images; this run's model takes tensors of shape {list(info.input_shape)}")
    names = info.class_names or [str(i) for i in range(info.num_outputs)]
    results = []
    for text, probs in zip(shown, torch.softmax(outputs.float(), dim=-1).tolist()):
        results.append({"input": text, "label": names[max(range(len(probs)), key=probs.__getitem__)],
                        "probabilities": {name: round(p, 6) for name, p in zip(names, probs)}})
    if output == "json":
        print(json.dumps(results, ensure_ascii=False, indent=2))
    else:
        _print_table(results, names, trained.weights)
    return results


@torch.inference_mode()
def _predict_texts(trained: Trained, texts: list[str]) -> torch.Tensor:
    tokenizer = trained.tokenizer()
    pad = PadBatch(tokenizer.pad_token_id or 0)
    ids = encode(texts, tokenizer, trained.info.input_shape[0])
    logits = []
    for start in range(0, len(ids), BATCH):
        batch, _ = pad([(t, 0) for t in ids[start:start + BATCH]])
        logits.append(trained.model(batch))
    return torch.cat(logits)


@torch.inference_mode()
def _predict_images(trained: Trained, files: list[Path]) -> torch.Tensor:
    transform = make_transform(trained.rc.data, trained.info, train=False, stored_dtype=torch.uint8)
    logits = []
    for start in range(0, len(files), BATCH):
        images = [read_image(f, trained.info) for f in files[start:start + BATCH]]
        batch = torch.stack([transform(x) if transform else x.float() for x in images])
        logits.append(trained.model(batch))
    return torch.cat(logits)


def _print_table(results: list[dict], names: list[str], weights: Path) -> None:
    from rich.table import Table

    table = Table(title=f"predictions of {weights}", title_justify="left")
    table.add_column("input", overflow="fold")
    table.add_column("label")
    for name in names:
        table.add_column(f"p({name})", justify="right")
    for r in results:
        table.add_row(r["input"], f"[bold]{r['label']}", *(f"{r['probabilities'][n]:.4f}" for n in names))
    console.print(table)
