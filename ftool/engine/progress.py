"""What a run shows while it works: a rich progress bar per epoch on a terminal, plain periodic
lines elsewhere (CI logs, files), and a table of results at the end."""

from __future__ import annotations

import os
import sys
import time

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

from ftool.rundir import is_main_process
from ftool.values import figure


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """Whoever read stdout went away (`ftool train | head`). The run directory is a run's
        record, so the work goes on with its output discarded (rich's default exits, failing the run)."""
        self.quiet = True
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own writes too


def plain_console(**options) -> Console:
    """A console that prints strings as they are: they hold users' texts, class names and paths, in
    which rich's markup would read `[word]` as a style (a run folder `runs/[a]` was shown as `runs/`,
    and a review with `[/b]` in it was a traceback). Styles are given as `style=`, never in a string."""
    return _Console(highlight=False, markup=False, **options)


console = plain_console()
_stderr = Console(stderr=True, highlight=False, markup=False)


def note(message: str) -> None:
    """A line on what ftool made of the input, from the main process only: with several processes,
    each builds the same data and would say the same."""
    if is_main_process():
        console.print(message, soft_wrap=True)


def warn(message: str) -> None:
    """A warning, on stderr: JSON or CSV that `predict` and `eval` write on stdout stays readable.
    From the main process only, as a note."""
    if is_main_process():
        _stderr.print(f"warning: {message}", style="yellow", soft_wrap=True)


PLAIN_LINE_SECONDS = 10.0  # without a terminal, at most one progress line this often


class TrainProgress:
    """Per-epoch progress: call `start_epoch`, then `advance` after each step, then `end_epoch`."""

    def __init__(self, enabled: bool, epochs: int, every: int):
        self.enabled, self.epochs, self.every = enabled, epochs, every
        self.bar = None
        if enabled and console.is_terminal:
            self.bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),  # loss and speed; empty on a validation row
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
                                          stats="loss - - samples/s")

    def advance(self, step: int, loss: float | None, samples_per_s: float | None) -> None:
        """`loss` is given every `every` steps (reading it syncs the device), else None."""
        if not self.enabled:
            return
        fields = {}
        if loss is not None:
            fields["stats"] = f"loss {figure(loss)} {f'{samples_per_s:,.0f}' if samples_per_s else '-'} samples/s"
        if self.bar is not None:
            self.bar.update(self.task, completed=step, **fields)
        elif fields and time.monotonic() - self.last_line >= PLAIN_LINE_SECONDS:
            self.last_line = time.monotonic()
            per_step = (self.last_line - self.started) / max(step - self.done, 1)
            console.print(f"epoch {self.epoch}/{self.epochs} step {step}/{self.total} {fields['stats']}, "
                          f"epoch ETA {_clock(per_step * (self.total - step))}")

    def end_epoch(self, metrics: dict[str, float], monitor: str) -> None:
        if self.enabled:
            shown = "  ".join(f"{k} {figure(v)}" for k, v in metrics.items() if k in ("train/loss", "val/loss", monitor))
            console.print(f"epoch {self.epoch}/{self.epochs}  {shown}")
            self.last_line = time.monotonic()

    def evaluation(self, name: str, total: int) -> "EvalProgress":
        """Progress through a validation pass, as a row of this bar (rich shows one live display)."""
        return EvalProgress(self.enabled, name, total, bar=self.bar)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class EvalProgress:
    """Progress through batches that are not training (validation, test, eval, predict): a bar
    that disappears when done on a terminal, a plain line at most every PLAIN_LINE_SECONDS
    elsewhere, so only a long pass shows anything in a log. Call `advance` per batch, then `close`."""

    def __init__(self, enabled: bool, name: str, total: int, bar: Progress | None = None):
        self.enabled, self.name, self.total, self.done = enabled, name, total, 0
        self.bar, self.own_bar, self.task = bar, None, None
        if enabled and console.is_terminal:
            if self.bar is None:
                self.bar = self.own_bar = Progress(
                    TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=True)
                self.own_bar.start()
            self.task = self.bar.add_task(name, total=total, stats="")
        self.started = self.last_line = time.monotonic()

    def advance(self) -> None:
        self.done += 1
        if self.task is not None:
            self.bar.update(self.task, completed=self.done)
        elif self.enabled and time.monotonic() - self.last_line >= PLAIN_LINE_SECONDS:
            self.last_line = time.monotonic()
            per_batch = (self.last_line - self.started) / self.done
            eta = _clock(per_batch * (self.total - self.done))
            console.print(f"{self.name} {self.done}/{self.total} batches, ETA {eta}")

    def close(self) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
        if self.own_bar is not None:
            self.own_bar.stop()


def _clock(seconds: float) -> str:
    """m:ss"""
    seconds = round(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


def print_metrics(title: str, metrics: dict[str, float], where: str = "") -> None:
    table = Table(title=title, title_justify="left", min_width=len(title))  # a title on one line
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, figure(value))
    console.print(table)
    if where:
        console.print(where, soft_wrap=True)


ALL_CLASSES_UP_TO, WORST_CLASSES_SHOWN = 20, 10  # more classes: the table shows the worst by F1 (eval.json has all)


def print_per_class(per_class: dict) -> None:
    """Each class's precision, recall, F1 and support, and the class it is most often mistaken for."""
    names, confusion = per_class["classes"], per_class["confusion_matrix"]
    rows, title = list(range(len(names))), "per class"
    if len(rows) > ALL_CLASSES_UP_TO:
        present = [i for i in rows if per_class["support"][i]]  # (a class with no samples has F1 0 too)
        rows = sorted(present, key=lambda i: (per_class["f1"][i], -per_class["support"][i]))[:WORST_CLASSES_SHOWN]
        title = f"per class: the {len(rows)} of {len(names)} with the lowest F1 (all in eval.json)"
    table = Table(title=title, title_justify="left")
    for column in ("class", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    table.add_column("most often mistaken for")
    for i in rows:
        wrong = max(((count, j) for j, count in enumerate(confusion[i]) if j != i and count), default=None)
        table.add_row(names[i], *(f"{per_class[m][i]:.4f}" for m in ("precision", "recall", "f1")),
                      str(per_class["support"][i]), f"{names[wrong[1]]} ({wrong[0]})" if wrong else "")
    console.print(table)
