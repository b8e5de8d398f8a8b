"""Metric logs. `metrics.jsonl` (one JSON object per logged step or epoch) is always written; the
`logger` config group adds TensorBoard, CSV, MLflow or W&B, several at once
(`logger=[tensorboard,csv]`). Only the main process logs. The trackers (TensorBoard's HParams,
MLflow, W&B) also get the run's settings, `optimizer.lr: 0.001` and so on, so that runs can be
compared by them, and MLflow and W&B how the run ended.

The file loggers read as one run: a new run replaces what an earlier failed attempt left in its
dir, and a resumed run (`resumed_at`: the checkpoint's step) drops what the first attempt logged
after the checkpoint, which it logs again."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from ftool.engine.atomic import atomic_write
from ftool.registry import LOGGERS
from ftool.rundir import read_records


def _kept(step: int, split: str, resumed_at: int | None) -> bool:
    """Does a record of an earlier attempt stay? Only those up to a resumed run's checkpoint (the
    final test is logged again)."""
    return resumed_at is not None and step <= resumed_at and split != "test"


class JsonlLogger:
    def __init__(self, path: Path, resumed_at: int | None = None):
        kept = [r for r in read_records(path) if _kept(r["step"], r.get("split"), resumed_at)]
        atomic_write(path, "".join(f"{json.dumps(r)}\n" for r in kept).encode())
        self.file = open(path, "a", encoding="utf-8")

    def log(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self, outcome: str = "completed") -> None:
        self.file.close()


def flat_settings(config: dict, prefix: str = "") -> dict[str, int | float | str | bool]:
    """A run's config as `optimizer.lr: 0.001` pairs, the hyperparameters trackers take (a list as
    its JSON text, null as "null")."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flat_settings(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
    return flat


def _metrics(record: dict) -> dict[str, float]:
    return {k: v for k, v in record.items() if k not in ("step", "epoch", "split") and isinstance(v, (int, float))}


@LOGGERS.register("tensorboard")
class TensorBoardLogger:
    """Event files under <run>/<dir>: `tensorboard --logdir outputs` shows every run."""

    def __init__(self, run_dir: Path, dir: str = "tensorboard", resumed_at: int | None = None,
                 settings: dict | None = None, metrics: tuple[str, ...] = ()):
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        if resumed_at is None:  # an earlier attempt's event files would show as part of this run
            for stale in (run_dir / dir).glob("events.out.tfevents.*"):
                stale.unlink()
        # A resumed run's writer hides the first attempt's events after the checkpoint.
        self.writer = SummaryWriter(log_dir=str(run_dir / dir),
                                    purge_step=None if resumed_at is None else resumed_at + 1)
        if settings:  # the HParams tab: a row per run, its settings beside the metrics it logs (`metrics`)
            for summary in hparams(settings, dict.fromkeys(metrics, 0.0)):
                self.writer.file_writer.add_summary(summary)

    def log(self, record: dict) -> None:
        for name, value in _metrics(record).items():
            self.writer.add_scalar(name if "/" in name else f"train/{name}", value, record["step"])

    def close(self, outcome: str = "completed") -> None:
        self.writer.close()


@LOGGERS.register("csv")
class CsvLogger:
    """One row per value: step, epoch, split, metric, value (a shape every tool reads)."""

    HEADER = ["step", "epoch", "split", "metric", "value"]

    def __init__(self, run_dir: Path, file: str = "metrics.csv", resumed_at: int | None = None):
        path = run_dir / file
        rows = []
        if path.is_file():
            with open(path, newline="", encoding="utf-8") as f:
                rows = [r for r in list(csv.reader(f))[1:] if len(r) == 5 and _kept(int(r[0]), r[2], resumed_at)]
        text = io.StringIO()
        csv.writer(text).writerows([self.HEADER, *rows])
        atomic_write(path, text.getvalue().encode())
        self.file = open(path, "a", newline="", encoding="utf-8")
        self.writer = csv.writer(self.file)

    def log(self, record: dict) -> None:
        for name, value in _metrics(record).items():
            self.writer.writerow([record["step"], record["epoch"], record["split"], name, value])
        self.file.flush()

    def close(self, outcome: str = "completed") -> None:
        self.file.close()


_MLFLOW_STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


def tracked_id(run_dir: Path, tracker: str, resumed_at: int | None) -> str | None:
    """The id of the tracker's run a resumed run continues (kept in <run>/<tracker>.run_id), else None."""
    path = run_dir / f"{tracker}.run_id"
    return path.read_text().strip() if resumed_at is not None and path.is_file() else None


@LOGGERS.register("mlflow")
class MlflowLogger:
    """An MLflow run with the run's settings as params (MLflow's default store: ./mlflow.db); a resumed run
    continues it. `log_model`: the best checkpoint is logged as an artifact when the run completes."""

    def __init__(self, run_dir: Path, experiment: str = "ftool", tracking_uri: str | None = None,
                 log_model: bool = False, settings: dict | None = None, run_name: str = "",
                 resumed_at: int | None = None):
        import mlflow

        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_experiment(experiment)
        run_id = tracked_id(run_dir, "mlflow", resumed_at)
        self.mlflow, self.run_dir, self.log_model = mlflow, run_dir, log_model
        self.run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name or str(run_dir))
        atomic_write(run_dir / "mlflow.run_id", self.run.info.run_id.encode())
        if not run_id:
            mlflow.log_params(settings or {})

    def log(self, record: dict) -> None:
        self.mlflow.log_metrics({k.replace("/", "_"): v for k, v in _metrics(record).items()}, step=record["step"])

    def close(self, outcome: str = "completed") -> None:
        best = self.run_dir / "checkpoints" / "best.safetensors"
        if self.log_model and outcome == "completed" and best.is_file():
            self.mlflow.log_artifact(str(best), artifact_path="checkpoints")
        self.mlflow.end_run(status=_MLFLOW_STATUS[outcome])


@LOGGERS.register("wandb")
class WandbLogger:
    """A W&B run with the run's settings as its config (mode=offline: files only, no account); a resumed
    run continues it. `log_model`: the best checkpoint is logged as an artifact when the run completes."""

    def __init__(self, run_dir: Path, project: str = "ftool", mode: str | None = None, log_model: bool = False,
                 settings: dict | None = None, run_name: str = "", resumed_at: int | None = None):
        import wandb

        run_id = tracked_id(run_dir, "wandb", resumed_at)
        self.run_dir, self.log_model = run_dir, log_model
        self.run = wandb.init(project=project, dir=str(run_dir), mode=mode, name=run_name or run_dir.name,
                              config=settings, id=run_id, resume="must" if run_id else None)
        atomic_write(run_dir / "wandb.run_id", self.run.id.encode())

    def log(self, record: dict) -> None:
        self.run.log(_metrics(record), step=record["step"])

    def close(self, outcome: str = "completed") -> None:
        best = self.run_dir / "checkpoints" / "best.safetensors"
        if self.log_model and outcome == "completed" and best.is_file():
            self.run.log_model(str(best), name=f"{self.run.id}-best")
        self.run.finish(exit_code=0 if outcome == "completed" else 1)


class Loggers:
    """metrics.jsonl plus the configured loggers; every record goes to all of them."""

    def __init__(self, run_dir: Path, metrics_file: Path, configured: dict[str, dict], enabled: bool = True,
                 resumed_at: int | None = None, settings: dict | None = None, metrics: tuple[str, ...] = ()):
        """`settings`: the run's flat settings (flat_settings); `metrics`: the names of the metrics
        it will log (val/accuracy, ...), for TensorBoard's HParams tab."""
        self.all = []
        if enabled:
            self.all = [JsonlLogger(metrics_file, resumed_at)]
            where = os.path.relpath(run_dir)  # a sweep's job by its whole path (multirun/.../3), not "3"
            for name, args in configured.items():
                try:
                    self.all.append(LOGGERS.build(name, args or {}, run_dir=run_dir, resumed_at=resumed_at,
                                                  settings=settings, metrics=metrics,
                                                  run_name=str(run_dir) if where.startswith("..") else where))
                except BaseException:  # an MLflow run started before would stay active for the sweep's next job
                    self.close("failed")
                    raise

    def log(self, record: dict) -> None:
        for logger in self.all:
            logger.log(record)

    def close(self, outcome: str = "completed") -> None:
        """`outcome`: completed, failed or interrupted (the trackers record how the run ended)."""
        for logger in self.all:
            logger.close(outcome)
