"""Shared helpers: run the real `ftool` CLI in a subprocess and read what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def ftool(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m ftool ARGS` in `cwd`, as a user runs it (no debug environment)."""
    environ = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "ftool", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=environ)


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
