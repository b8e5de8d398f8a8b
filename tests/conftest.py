"""Shared helpers: run the real `ftool` CLI in its own process and read what it wrote."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.forked_cli import ftool_process


def ftool(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None,
          stdin: str = "") -> subprocess.CompletedProcess:
    """`python -m ftool ARGS` in `cwd`, as a user runs it (no debug environment), `stdin` piped in: a
    process forked from one that has imported torch, where that is safe (tests/forked_cli.py)."""
    environ = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    environ.update(env or {})
    return ftool_process(list(args), str(cwd), environ, stdin, timeout)


def model_of_your_own(workdir: Path, name: str, body: str) -> tuple[str, ...]:
    """A user's model module (`<name>.py`: torch's nn and math imported, then `body`, which registers
    `name`) and its config (conf/model/<name>.yaml); returns the arguments that choose it."""
    (workdir / f"{name}.py").write_text("import math\nfrom torch import nn\nfrom ftool.registry import MODELS\n\n" + body)
    (workdir / "conf" / "model").mkdir(parents=True, exist_ok=True)
    (workdir / "conf" / "model" / f"{name}.yaml").write_text(f"name: {name}\n")
    return "--config-dir", "conf", f"model={name}", f"imports=[{name}]"


def closed_port() -> int:
    """A local port nothing listens on: a connection to it is refused at once (a server out of reach)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """A user error: non-zero exit, one `ftool: error:` line on stderr, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ftool: error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


# A vocabulary for the tiny BERT: sentiment words, fillers, and letters for anything else.
POSITIVE = "great good gorgeous witty fun brilliant moving superb".split()
NEGATIVE = "bad awful boring dull clichés tedious weak messy".split()
FILLER = "the a movie film plot is was and very from start to finish , .".split()


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A randomly initialized 2-layer BERT (hidden size 32) and its WordPiece tokenizer, saved in
    Hugging Face format: what `model.name_or_path` points at in tests (no download)."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER,
             *"abcdefghijklmnopqrstuvwxyz!'"]
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    BertTokenizerFast(str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(vocab_size=len(dict.fromkeys(vocab)), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def sentiment_sentences(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(positive, negative) sentences that the words decide: learnable by a tiny model in seconds."""
    import random

    rng = random.Random(seed)

    def sentence(words):
        picked = [rng.choice(FILLER) for _ in range(rng.randint(2, 8))] + rng.sample(words, 2)
        rng.shuffle(picked)
        return " ".join(picked)

    return [sentence(POSITIVE) for _ in range(n)], [sentence(NEGATIVE) for _ in range(n)]
