"""The run directory, a stable contract (docs/runs.md):

    .hydra/              Hydra's: config.yaml, overrides.yaml, hydra.yaml
    summary.json         the run record: status, config, data, metrics, best, checkpoints, timing, environment
    metrics.jsonl        one JSON object per logged step or epoch
    checkpoints/         best.safetensors, last.safetensors, last.state.pt
    eval.json            written by `ftool eval`

summary.json is what eval, predict, export and a resume read: the validated config the run trained
with (paths made absolute), its data's description and its checkpoints. Torch-free.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import time
from pathlib import Path

import ftool
from ftool.engine.atomic import atomic_write_json
from ftool.errors import FtoolError, RunInterrupted, one_line, report


def is_main_process() -> bool:
    """The process that writes the run directory (torchrun sets RANK in each process it starts)."""
    return int(os.environ.get("RANK", "0")) == 0


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.checkpoints = self.path / "checkpoints"
        self.best_weights = self.checkpoints / "best.safetensors"
        self.last_weights = self.checkpoints / "last.safetensors"
        self.last_state = self.checkpoints / "last.state.pt"
        self.last_prev_weights = self.checkpoints / "last.prev.safetensors"

    def epoch_weights(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch-{epoch}.safetensors"

    def relative(self, path: Path) -> str:
        return str(Path(path).relative_to(self.path))

    def record(self) -> dict:
        """summary.json, with the run's config and data description (an ftool run before the record
        held its config: Hydra's saved one)."""
        summary = read_json(self.summary) or {}
        if "config" not in summary and (self.path / ".hydra" / "config.yaml").is_file():
            import yaml

            summary["config"] = yaml.safe_load((self.path / ".hydra" / "config.yaml").read_text())
        if not summary.get("config") or not summary.get("data"):
            raise FtoolError(f"ckpt: {self.summary} holds no record of the run's config and data (the run failed "
                             f"before it built its data?)")
        return summary


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_records(metrics: Path) -> list[dict]:
    """metrics.jsonl's records; a line cut short by a killed process is left out."""
    records = []
    for line in Path(metrics).read_text().splitlines() if Path(metrics).is_file() else []:
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))
    return records


def locate_checkpoint(ckpt: str, key: str = "ckpt") -> tuple[RunDir, Path]:
    """A run dir (its best checkpoint, else its last), its checkpoints/ folder, or a checkpoint file in it."""
    path = Path(ckpt).expanduser().resolve()
    if path.is_file():
        return RunDir(path.parent.parent), path
    run = RunDir(path.parent if path.name == "checkpoints" else path)
    weights = next((p for p in (run.best_weights, run.last_weights) if p.is_file()), None)
    if weights is None:
        jobs = sweep_jobs(path)
        hint = f"; it is a sweep: give one of its jobs, such as {jobs[0].path}" if jobs else ""
        raise FtoolError(f"{key}: {path} holds no checkpoints/best.safetensors or last.safetensors{hint}")
    return run, weights


def holds_checkpoints(path: Path) -> bool:
    return any((Path(path) / "checkpoints").glob("*.safetensors"))


def claim_new_dir(path: Path) -> Path:
    """Make `path` for a new run, or `path-2`, `path-3`, ... where another run has it (runs started in the
    same second share a timestamp). mkdir is atomic: no two runs ever get the same dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        candidate = path if n == 1 else path.with_name(f"{path.name}-{n}")
        with contextlib.suppress(FileExistsError):
            candidate.mkdir()
            return candidate


def sweep_jobs(sweep: Path) -> list[RunDir]:
    """A sweep's jobs (its subfolders with a summary.json), in job order: 0, 1, 2, ..., 10."""
    found = (s.parent for s in Path(sweep).glob("*/summary.json"))
    return [RunDir(p) for p in sorted(found, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit()
                                                            else 0, p.name))]


def evaluated_scope(split: str, samples: int) -> str:
    """What an `ftool eval` scored, as its table's title and the report's confusion matrix say it."""
    counted = f"{samples:,} sample{'' if samples == 1 else 's'}"
    return f"all {counted}" if split == "all" else f"{split} split, {counted}"


class Summary:
    """summary.json of one command: written when it starts (`begin`), when its data is known, and when it
    ends. `earlier`: the record this run dir already has (a resume): it stands, results and config, until
    the resume goes ahead (a refused one leaves it as it was)."""

    KEPT = ("config", "data", "parameters", "finetune", "metrics", "best", "checkpoints")
    started_one = False  # in this process: a sweep runs its jobs one after another in one

    def __init__(self, run: RunDir, command: str, earlier: dict | None = None):
        self.run, self.enabled, self.begun = run, is_main_process(), False
        # a process's first job counts from ftool's import (starting up is part of it), later jobs their own
        self.start = time.perf_counter() if Summary.started_one else ftool.STARTED
        Summary.started_one = True
        self.data: dict = {"command": command, "status": "running",
                           "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                           **{key: earlier[key] for key in self.KEPT if key in (earlier or {})}}

    def begin(self, **fields) -> None:
        self.begun = True
        self.update(**fields)

    def update(self, **fields) -> None:
        self.data.update(fields)
        if self.enabled and self.begun:
            atomic_write_json(self.run.summary, self.data)

    @contextlib.contextmanager
    def recording(self):
        """Mark the run completed on success, interrupted or failed (with the reason) otherwise."""
        try:
            yield self
        except (RunInterrupted, KeyboardInterrupt):
            self._end("interrupted")
            raise
        except BaseException as e:
            self._end("failed", error=report(e) if isinstance(e, Exception) else one_line(e))
            raise
        self._end("completed")

    def _end(self, status: str, **fields) -> None:
        self.data.setdefault("timing", {})["total_seconds"] = round(time.perf_counter() - self.start, 3)
        self.update(status=status, **fields)
