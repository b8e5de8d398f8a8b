"""Shared helpers: the real CLI run in this process (`cli`) or in a new one (`ftool_process`), small
datasets in their real on-disk formats, and a tiny BERT saved in Hugging Face's format."""

from __future__ import annotations

import json
import os
import pickle
import random
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ftool.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """`ftool ARGS` in this process, in tmp_path: its exit status and output."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)

    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code or 0
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def ftool_process(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m ftool ARGS` in a new interpreter, as a user runs it."""
    environ = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"} | (env or {})
    return subprocess.run([sys.executable, "-m", "ftool", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=environ)


def one_line_error(result, *fragments: str) -> str:
    """A mistake: exit status 2, one `ftool: error:` line, no traceback."""
    lines = (getattr(result, "err", None) or getattr(result, "stderr", "")).strip().splitlines()
    assert getattr(result, "code", getattr(result, "returncode", None)) == 2, result.err
    assert len(lines) == 1 and lines[0].startswith("ftool: error: "), result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def write_cifar10(root: Path, per_batch: int = 20, test: int = 30) -> None:
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", test)]:
        batch = {"labels": rng.integers(0, 10, n).tolist(), "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))


def write_mnist(root: Path, train: int = 50, test: int = 20) -> None:
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", train), ("t10k", test)):
        for kind, array in (("images-idx3", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
                            ("labels-idx1", rng.integers(0, 10, n).astype(np.uint8))):
            header = struct.pack(">i", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(header + array.tobytes())


def write_image_folder(root: Path, classes=("cat", "dog"), per_class: int = 6, size=(12, 10)) -> None:
    """PNGs: a bright image per 'cat', a dark one per 'dog', so a model can tell them apart."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip((200 if c == 0 else 40) + rng.integers(-30, 30, (*size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


# A vocabulary for the tiny BERT: sentiment words, fillers, and letters for anything else.
POSITIVE = "great good gorgeous witty fun brilliant moving superb".split()
NEGATIVE = "bad awful boring dull clichés tedious weak messy".split()
FILLER = "the a movie film plot is was and very from start to finish , .".split()


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A randomly initialized 2-layer BERT (hidden size 32) and its WordPiece tokenizer, saved in Hugging
    Face format: what `model.name_or_path` points at in tests (no download)."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER,
                                *"abcdefghijklmnopqrstuvwxyz!'#"]))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def sentiment_sentences(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(positive, negative) sentences that their words decide: learnable by a tiny model in seconds."""
    rng = random.Random(seed)

    def sentence(words):
        picked = [rng.choice(FILLER) for _ in range(rng.randint(2, 8))] + rng.sample(words, 2)
        rng.shuffle(picked)
        return " ".join(picked)

    return [sentence(POSITIVE) for _ in range(n)], [sentence(NEGATIVE) for _ in range(n)]


@pytest.fixture
def sentiment_files(tmp_path) -> Path:
    """texts/mr.pos and texts/mr.neg, a sentence per line (the rt-polarity layout)."""
    pos, neg = sentiment_sentences(150)
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "mr.pos").write_text("\n".join(pos) + "\n")
    (folder / "mr.neg").write_text("\n".join(neg) + "\n")
    return folder
