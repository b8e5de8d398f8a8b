"""The run directory, a stable contract (see README, "The run directory"):

    .hydra/config.yaml   the composed config (Hydra's)
    metrics.jsonl        one JSON object per logged step or epoch
    summary.json         status, metrics, best, checkpoints, timing, environment
    checkpoints/         best.safetensors, last.safetensors, last.state.pt
    eval.json            written by `ftool eval`
    .lock                held by the process training the run (train_lock)

Torch-free, so that the CLI can find a run before deciding what to import.
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
from ftool.errors import FtoolError, RunInterrupted, machine_errors, one_line


def is_main_process() -> bool:
    """The process that writes the run directory. Known before the process group starts: torchrun
    sets RANK in every process it launches."""
    return int(os.environ.get("RANK", "0")) == 0


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.config = self.path / ".hydra" / "config.yaml"
        self.checkpoints = self.path / "checkpoints"
        self.best_weights = self.checkpoints / "best.safetensors"
        self.last_weights = self.checkpoints / "last.safetensors"
        self.last_state = self.checkpoints / "last.state.pt"
        self.last_prev_weights = self.checkpoints / "last.prev.safetensors"
        self.lock = self.path / ".lock"

    def epoch_weights(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch-{epoch}.safetensors"

    def relative(self, path: Path) -> str:
        return str(Path(path).relative_to(self.path))


def read_json(path: Path) -> dict | None:
    """A JSON file a run wrote (summary.json, eval.json), or None where there is none (or it cannot be read)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_summary(run: RunDir) -> dict | None:
    return read_json(run.summary)


def read_saved(run: RunDir, name: str = "config") -> dict | None:
    """The run's `.hydra/<name>.yaml` (config: the composed config; hydra: Hydra's, with the folder the
    run started in), or None where there is none (or it cannot be read)."""
    import yaml

    try:
        saved = yaml.safe_load((run.path / ".hydra" / f"{name}.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return saved if isinstance(saved, dict) else None


def where_it_ran(run: RunDir) -> Path | None:
    """The folder a run was started in (Hydra records it), or None where there is no record."""
    cwd = ((read_saved(run, "hydra") or {}).get("hydra") or {}).get("runtime", {}).get("cwd")
    return Path(cwd) if cwd else None


def relative_paths_resolved(run: RunDir) -> dict[str, Path]:
    """The relative paths in a run's saved config (`data.root: imgs`, `model.name_or_path: ...`) as the
    folder it ran in resolves them, keyed `data.root`. A value counts as a path when it names something
    there (a hub id such as bert-base-uncased does not); none when the run ran here, or left no record."""
    ran_in = where_it_ran(run)
    if not ran_in or ran_in.resolve() == Path.cwd().resolve():
        return {}
    saved = read_saved(run) or {}
    return {f"{group}.{key}": ran_in / value
            for group in ("data", "model", "finetune") for key, value in (saved.get(group) or {}).items()
            if isinstance(value, str) and value and not Path(value).is_absolute() and (ran_in / value).exists()}


# Where Hydra saves a resume's config: it replaces the run's own (.hydra/) only once the run's
# checkpoint has loaded into the model it describes (`settle_config`), so a refused resume (another
# model, other classes) leaves the config that eval, predict and later resumes need.
PENDING_CONFIG = ".hydra-resume"


def settle_config(run: RunDir, taken: bool) -> None:
    """Make a resume's pending config the run's (`taken`: the resume went ahead; or the run has none
    yet), else drop it. `auto` composed its config afresh: it is saved as Hydra saves a run's. A resume
    by path applied its overrides to the run's config: overrides.yaml keeps the run's and adds the
    resume's (trainer.resume aside), and hydra.yaml stays the run's (the folder it ran in, where its
    relative paths and `imports` are)."""
    import shutil

    import yaml

    pending, saved = run.path / PENDING_CONFIG, run.config.parent
    if not pending.is_dir():
        return
    if taken or not run.config.is_file():
        overrides = yaml.safe_load((pending / "overrides.yaml").read_text()) or []
        if "trainer.resume=auto" not in overrides and run.config.is_file():  # a resume by path
            given = {o.partition("=")[0] for o in overrides}
            own = yaml.safe_load((saved / "overrides.yaml").read_text()) if (saved / "overrides.yaml").is_file() else []
            overrides = ([o for o in own or [] if o.partition("=")[0] not in given]
                         + [o for o in overrides if not o.startswith("trainer.resume=")])
            (pending / "overrides.yaml").write_text(yaml.safe_dump(overrides))
            (pending / "hydra.yaml").unlink(missing_ok=True)
        saved.mkdir(exist_ok=True)
        for name in ("overrides.yaml", "hydra.yaml", "config.yaml"):  # the config last: it marks the record whole
            if (pending / name).is_file():
                os.replace(pending / name, saved / name)
    shutil.rmtree(pending, ignore_errors=True)


def check_rerun_job(job: Path, overrides: list[str], swept: set[str]) -> None:
    """A sweep run again (trainer.resume=auto) continues its jobs by number. A job folder that holds
    a run of other values of the `swept` keys (a value added to a list shifts the rest; a search
    proposes others) would be skipped or continued as this job, its results filed under this job's settings."""
    import yaml

    saved_file = job / ".hydra" / "overrides.yaml"
    if not (holds_checkpoints(job) and saved_file.is_file()):
        return

    def values(items):
        return {key.lstrip("+~"): value for key, _, value in (o.partition("=") for o in items or [])}

    saved, now = values(yaml.safe_load(saved_file.read_text())), values(overrides)
    continued = {"trainer.epochs", "trainer.max_steps"}  # more of them continue a job: what a resume is for
    differ = sorted(k for k in swept - continued if saved.get(k) != now.get(k))
    if differ:
        def settings(given):
            return ", ".join(f"{k}={given.get(k, '(unset)')}" for k in differ)

        raise FtoolError(f"trainer.resume=auto: {job} holds a run of {settings(saved)}, and this sweep's job {job.name} "
                         f"is {settings(now)}; a sweep continues its jobs by number: run it again with the values it "
                         f"had (more trainer.epochs continue them), or give another hydra.sweep.dir")


# what a run found and what resumes, eval and report read (its export/ folder is none of them)
RECORDS = (".hydra", "checkpoints", "summary.json", "metrics.jsonl", "eval.json", "tensorboard", "metrics.csv", ".lock")


def records_holding(path: Path) -> RunDir | None:
    """The run among whose records `path` lies (its summary.json, its checkpoints/ or a file there), else None."""
    path = Path(path).expanduser().resolve()
    for folder in path.parents:
        if RunDir(folder).config.is_file():
            return RunDir(folder) if path.relative_to(folder).parts[0] in RECORDS else None
    return None


def holds_checkpoints(path: Path) -> bool:
    """Does `path` hold a run's results (weights in its checkpoints/)?"""
    return any((Path(path) / "checkpoints").glob("*.safetensors"))


def claim_new_dir(path: Path) -> Path:
    """Make `path` for a new run, or `path-2`, `path-3`, ... where another run has it (runs started
    in the same second share a timestamp). mkdir is atomic: no two runs ever get the same dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        candidate = path if n == 1 else path.with_name(f"{path.name}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue


def sweep_jobs(sweep: Path) -> list[RunDir]:
    """A sweep's jobs (its subfolders with a summary.json), in job order: 0, 1, 2, ..., 10."""
    def order(path: Path):
        return (0, int(path.name), "") if path.name.isdigit() else (1, 0, path.name)

    return [RunDir(p) for p in sorted((s.parent for s in Path(sweep).glob("*/summary.json")), key=order)]


def failed_jobs(sweep: Path, since: float) -> list[RunDir]:
    """The sweep's jobs that failed in a sweep started at `since` (time.time()): read from their
    summary.json, as jobs may run in other processes (joblib) or on other machines (SLURM)."""
    since -= 2  # some file systems keep modification times to the second or two
    return [job for job in sweep_jobs(sweep) if job.summary.stat().st_mtime >= since
            and (read_summary(job) or {}).get("status") == "failed"]


def evaluated_scope(split: str, samples: int) -> str:
    """What an `ftool eval` scored, as its table's title and the report's confusion matrix say it."""
    counted = f"{samples:,} sample{'' if samples == 1 else 's'}"
    return f"all {counted}" if split == "all" else f"{split} split, {counted}"


def read_records(metrics: Path) -> list[dict]:
    """metrics.jsonl's records; a line cut short by a killed process is left out."""
    if not metrics.is_file():
        return []
    records = []
    for line in metrics.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def locate_run(given: str, key: str = "ckpt") -> RunDir:
    """The run dir that `given` names: the dir itself or a file in its checkpoints/ folder."""
    path = Path(given).expanduser().resolve()
    if not path.exists():
        raise FtoolError(f"{key}: {given} does not exist; give a run directory or a checkpoint file")
    run = RunDir(path if path.is_dir() else path.parent.parent)  # <run>/checkpoints/<file>
    if not run.config.is_file():
        raise FtoolError(f"{key}: {run.path} has no .hydra/config.yaml; give an ftool run directory "
                         f"or a file in its checkpoints/ folder")
    return run


def locate_checkpoint(ckpt: str, key: str = "ckpt") -> tuple[RunDir, Path]:
    """A run dir (its best checkpoint, else its last) or a checkpoint file inside a run dir."""
    path = Path(ckpt).expanduser().resolve()
    if path.is_dir():
        run = RunDir(path.parent if path.name == "checkpoints" else path)  # <run>/checkpoints means the run
        weights = next((p for p in (run.best_weights, run.last_weights) if p.is_file()), None)
        jobs = sweep_jobs(path) if weights is None else []
        if jobs:
            raise FtoolError(f"{key}: {path} is a sweep of {len(jobs)} jobs; give one of them, such as "
                             f"{jobs[0].path} (`ftool report {ckpt}` ranks them)")
        if weights is None:
            raise FtoolError(f"{key}: {path} holds no checkpoint: {_why_no_checkpoint(run)}")
        path = weights
    elif path.suffix != ".safetensors" and path.exists():
        raise FtoolError(f"{key}: {ckpt} is not a weights file; give a run directory or a checkpoints/*.safetensors "
                         f"file (last.state.pt is the rest of the training state; its weights are last.safetensors)")
    return locate_run(str(path) if path.is_file() else ckpt, key), path


def _why_no_checkpoint(run: RunDir) -> str:
    """What the run's summary.json says about it, else what an ftool run dir would hold."""
    summary = read_summary(run) or {}
    status = summary.get("status")
    if status == "failed":
        return f"the run failed before it saved one ({summary.get('error', 'no reason recorded')})"
    if status == "interrupted":
        return "the run was interrupted before it saved one"
    if status == "running":
        return "the run is still going and has saved none yet"
    if (run.path / "config.json").is_file():  # (an export's hf/ folder, a model downloaded from the hub)
        return f"it is a Hugging Face model's folder, which model=hf_classifier model.name_or_path={run.path} loads"
    return (f"expected {run.relative(run.best_weights)} or {run.relative(run.last_weights)}; "
            f"is it an ftool run directory?")


@contextlib.contextmanager
def train_lock(run: RunDir):
    """Held while this process trains `run`: a second process that would train it too (a resume
    started twice, `trainer.resume=auto` beside the live run) is refused in one line, since both
    would write its checkpoints and records. The OS holds the lock for the process (flock), so a
    killed one holds it no more."""
    import fcntl
    import socket

    run.path.mkdir(parents=True, exist_ok=True)
    fd = os.open(run.lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, 0)
            os.write(fd, f"process {os.getpid()} on {socket.gethostname()}".encode())
        except BlockingIOError:
            raise FtoolError(_training_elsewhere(run, os.read(fd, 200))) from None
        except OSError:  # a file system without locks (some network and FUSE ones): train unguarded
            pass
        yield
    finally:
        os.close(fd)


def training_process(run: RunDir) -> str | None:
    """Which process holds the run's train_lock ("process 123 on host"), or None: a run whose summary
    says `running` and that has a lock no process holds was killed (SIGKILL, out of memory, a machine
    that went down), as every other end is recorded."""
    import fcntl

    try:
        fd = os.open(run.lock, os.O_RDONLY)
    except OSError:  # no lock: no run, or one of an ftool without them
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return os.read(fd, 200).decode(errors="replace").strip() or "another process"
    except OSError:  # (a file system without locks: nothing to tell)
        return None
    finally:
        os.close(fd)


def check_not_training(run: RunDir) -> None:
    """Before Hydra writes a config into a run dir that another process trains (train_lock decides)."""
    holder = training_process(run)
    if holder:
        raise FtoolError(_training_elsewhere(run, holder.encode()))


def _training_elsewhere(run: RunDir, holder: bytes) -> str:
    return (f"{run.path}: {holder.decode(errors='replace').strip() or 'another process'} is training this run; "
            f"wait for it to end, or stop it, before training it again")


class Summary:
    """summary.json of one command: written when the run starts, updated when it ends (or fails).

    `earlier`: the summary this run dir already has (a resume). Its results (the data, metrics, best
    checkpoint) stand until this command replaces them, so a resume that fails before it trains keeps
    the run usable by eval and predict, which read the data's description here."""

    KEPT = ("data", "parameters", "finetune", "metrics", "best", "checkpoints")
    started_one = False  # in this process: a sweep runs its jobs one after another in one

    def __init__(self, run: RunDir, command: str, enabled: bool = True, earlier: dict | None = None):
        self.run, self.enabled = run, enabled  # only the main process writes
        self.kept = False
        # timing counts from the job's start: a process's first job's is ftool's (its imports are part
        # of starting up), a sweep's later jobs' their own (not the jobs before them)
        self.start = time.perf_counter() if Summary.started_one else ftool.STARTED
        Summary.started_one = True
        self.data: dict = {"command": command, "status": "running",
                           "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                           **{key: (earlier or {})[key] for key in self.KEPT if key in (earlier or {})}}
        self.write()

    def update(self, **fields) -> None:
        self.data.update(fields)
        self.write()

    def write(self) -> None:
        from ftool.engine.atomic import atomic_write_json

        if self.enabled:
            atomic_write_json(self.run.summary, self.data)

    @contextlib.contextmanager
    def recording(self):
        """Mark the run completed on success, interrupted or failed (with the reason, in the CLI's words)
        otherwise."""
        try:
            with machine_errors():
                yield self
        except (RunInterrupted, KeyboardInterrupt):  # (a second Ctrl-C stops at once)
            self._end("interrupted")
            raise
        except BaseException as e:
            self._end("failed", error=one_line(e))
            raise
        self._end("completed")

    def keep(self, previous: dict) -> None:
        """This command found its work already done: the earlier record stands, unstamped."""
        self.data, self.kept = previous, True
        self.write()

    def _end(self, status: str, **fields) -> None:
        if self.kept:
            return
        timing = self.data.setdefault("timing", {})
        timing["total_seconds"] = round(time.perf_counter() - self.start, 3)
        self.update(status=status, **fields)
