"""Callbacks: code of one's own run at points of training, chosen in the `callbacks` config group
(`callbacks=[model_summary,lr_monitor]`, or `+callbacks.mine._target_=my_project.MyCallback`).

A callback is any object with some of these methods; each gets the Trainer (its model, optimizer,
logger, config, run directory) first:

    on_fit_start(trainer)
    on_train_batch_end(trainer, step, loss)     after each optimizer step; `loss`: the batch's, a tensor
    on_validation_end(trainer, metrics)         {"val/accuracy": ..., ...}
    on_fit_end(trainer, result)                 FitResult: metrics, best, epochs, steps, timing
    on_exception(trainer, error)                training failed or was interrupted

Every process calls them (guard with `trainer.acc.is_main` to act once).
"""

from __future__ import annotations

from pathlib import Path

import torch
from rich.table import Table

from ftool.engine.progress import console, note
from ftool.registry import CALLBACKS

HOOKS = ("on_fit_start", "on_train_batch_end", "on_validation_end", "on_fit_end", "on_exception")


class Callbacks:
    """The configured callbacks, each hook called on every one that has it, in the config's order."""

    def __init__(self, configured: dict[str, dict], run_dir: Path):
        self.all = []
        for name, args in configured.items():
            args = dict(args or {})
            self.all.append(CALLBACKS.build(args.pop("_target_", name), args, run_dir=run_dir))

    def __call__(self, hook: str, trainer, *args) -> None:
        for callback in self.all:
            if hasattr(callback, hook):
                getattr(callback, hook)(trainer, *args)


@CALLBACKS.register("model_summary")
class ModelSummary:
    """At the start, a table of the model's modules to `depth` levels: type, parameters, trainable."""

    def __init__(self, depth: int = 1):
        self.depth = depth

    def on_fit_start(self, trainer) -> None:
        if not trainer.acc.is_main:
            return
        table = Table(title="model", title_justify="left")
        for column in ("module", "type", "parameters", "trainable"):
            table.add_column(column, justify="right" if column in ("parameters", "trainable") else "left")
        for name, module in trainer.model.named_modules():
            if name and name.count(".") < self.depth:
                params = list(module.parameters())
                table.add_row(name, type(module).__name__, f"{sum(p.numel() for p in params):,}",
                              f"{sum(p.numel() for p in params if p.requires_grad):,}")
        console.print(table)


@CALLBACKS.register("lr_monitor")
class LearningRateMonitor:
    """Logs every parameter group's learning rate (`lr/group<i>`), every trainer.log_every_n_steps steps."""

    def on_train_batch_end(self, trainer, step: int, loss: torch.Tensor) -> None:
        if step % trainer.cfg.log_every_n_steps == 0:
            trainer.logger.log({"step": step, "split": "train", "epoch": None,
                                **{f"lr/group{i}": g["lr"] for i, g in enumerate(trainer.optimizer.param_groups)}})


@CALLBACKS.register("profiler")
class Profiler:
    """torch.profiler over steps wait+1 .. wait+warmup+active: a trace in <run>/profile/ (TensorBoard's
    profiler plugin or https://ui.perfetto.dev read it) and a table of the operators that took longest."""

    def __init__(self, run_dir: Path, wait: int = 1, warmup: int = 1, active: int = 3, rows: int = 15):
        self.run_dir, self.rows = run_dir, rows
        self.schedule = torch.profiler.schedule(wait=wait, warmup=warmup, active=active, repeat=1)
        self.profiler = None

    def on_fit_start(self, trainer) -> None:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if trainer.acc.device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        handler = torch.profiler.tensorboard_trace_handler(str(self.run_dir / "profile"))
        self.profiler = torch.profiler.profile(activities=activities, schedule=self.schedule, on_trace_ready=handler)
        self.profiler.start()

    def on_train_batch_end(self, trainer, step: int, loss: torch.Tensor) -> None:
        self.profiler.step()

    def on_fit_end(self, trainer, result) -> None:
        self.profiler.stop()
        if trainer.acc.is_main and self.profiler.profiler is not None:
            sort = "self_cuda_time_total" if trainer.acc.device.type == "cuda" else "self_cpu_time_total"
            console.print(self.profiler.key_averages().table(sort_by=sort, row_limit=self.rows), soft_wrap=True)
            note(f"profile: a trace of the profiled steps in {self.run_dir / 'profile'}")

    def on_exception(self, trainer, error: BaseException) -> None:
        if self.profiler is not None:
            self.profiler.stop()
