"""What a run shows while it works: a rich progress bar per epoch on a terminal, plain periodic
lines elsewhere (CI logs, files), and a table of results at the end."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

console = Console(highlight=False)
PLAIN_LINE_SECONDS = 10.0  # without a terminal, at most one progress line this often


class TrainProgress:
    """Per-epoch progress: call `start_epoch`, then `advance` after each step, then `end_epoch`."""

    def __init__(self, enabled: bool, epochs: int, every: int):
        self.enabled, self.epochs, self.every = enabled, epochs, every
        self.bar = None
        if enabled and console.is_terminal:
            self.bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]} samples/s"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=console, transient=False,
            )
            self.bar.start()
        self.task = None
        self.epoch, self.total = 0, 0
        self.last_line = time.monotonic()

    def start_epoch(self, epoch: int, total: int, done: int = 0) -> None:
        """`done`: batches of this epoch already trained (a resumed run)."""
        self.epoch, self.total, self.done, self.started = epoch, total, done, time.monotonic()
        if self.bar is not None:
            self.task = self.bar.add_task(f"epoch {epoch}/{self.epochs}", total=total, completed=done,
                                          loss="-", speed="-")

    def advance(self, step: int, loss: float | None, samples_per_s: float | None) -> None:
        """`loss` is given every `every` steps (reading it syncs the device), else None."""
        if not self.enabled:
            return
        fields = {}
        if loss is not None:
            fields = {"loss": f"{loss:.4f}", "speed": f"{samples_per_s:,.0f}" if samples_per_s else "-"}
        if self.bar is not None:
            self.bar.update(self.task, completed=step, **fields)
        elif loss is not None and time.monotonic() - self.last_line >= PLAIN_LINE_SECONDS:
            self.last_line = time.monotonic()
            per_step = (self.last_line - self.started) / max(step - self.done, 1)
            eta = round(per_step * (self.total - step))
            console.print(f"epoch {self.epoch}/{self.epochs} step {step}/{self.total} loss {fields['loss']} "
                          f"{fields['speed']} samples/s, epoch ETA {eta // 60}:{eta % 60:02d}")

    def end_epoch(self, metrics: dict[str, float], monitor: str) -> None:
        if self.enabled:
            shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k in ("train/loss", "val/loss", monitor))
            console.print(f"epoch {self.epoch}/{self.epochs}  {shown}")
            self.last_line = time.monotonic()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def print_metrics(title: str, metrics: dict[str, float], where: str = "") -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}")
    console.print(table)
    if where:
        console.print(where, soft_wrap=True)
