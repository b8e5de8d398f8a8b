"""What a run shows while it works: one live progress bar on a terminal (each finished epoch printed as
a plain line above it), plain periodic lines elsewhere (CI logs, files), and tables of results."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ftool.errors import report
from ftool.rundir import is_main_process

PLAIN_LINE_SECONDS = 10.0  # without a terminal, at most one progress line this often


class _Console(Console):
    copy: Console | None = None  # where everything printed also goes (logged_to)

    def print(self, *objects, **kwargs) -> None:
        super().print(*objects, **kwargs)
        if self.copy is not None:
            self.copy.print(*objects, **kwargs)

    def on_broken_pipe(self) -> None:
        """Whoever read stdout went away (`ftool train | head`): the run goes on, its output discarded."""
        self.quiet = True
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


# Strings print as they are: users' texts, class names and paths would read `[word]` as rich markup.
console = _Console(highlight=False, markup=False)
_stderr = _Console(stderr=True, highlight=False, markup=False)


@contextlib.contextmanager
def logged_to(path: Path):
    """Everything the main process prints, warnings and the error that ends it also go to `path`, as plain
    text (appended: a resumed run's log goes on)."""
    if not is_main_process():
        yield
        return
    with open(path, "a", encoding="utf-8") as file:
        console.copy = _stderr.copy = Console(file=file, width=120, highlight=False, markup=False)
        try:
            yield
        except Exception as e:
            console.copy.print(f"ftool: error: {report(e)}", soft_wrap=True)
            raise
        finally:
            console.copy = _stderr.copy = None


def note(message: str) -> None:
    """A line on what ftool made of the input, from the main process only."""
    if is_main_process():
        console.print(message, soft_wrap=True)


def warn(message: str) -> None:
    """A warning on stderr (JSON or CSV on stdout stays readable), from the main process only."""
    if is_main_process():
        _stderr.print(f"warning: {message}", style="yellow", soft_wrap=True)


def figure(value: float) -> str:
    """A metric as tables show it: 4 decimals; a huge one (a diverging loss) in powers of ten."""
    return f"{value:.4f}" if abs(value) < 1e6 else f"{value:.4g}"


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class Bar:
    """Progress through batches: a live bar on a terminal (one at a time, rich's rule), a plain line at most
    every PLAIN_LINE_SECONDS elsewhere. `task` starts a pass, `advance` moves it, `done` removes it."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and is_main_process()
        self.live = None
        if self.enabled and console.is_terminal:
            self.live = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=console, transient=True)
            self.live.start()
        self.name, self.total, self.done_before, self.task = "", 0, 0, None

    def start(self, name: str, total: int, done: int = 0) -> None:
        self.name, self.total, self.done_before, self.started = name, total, done, time.monotonic()
        self.last_line = self.started
        if self.live is not None:
            self.task = self.live.add_task(name, total=total, completed=done, stats="")

    def advance(self, at: int, stats: str = "") -> None:
        if self.live is not None:
            self.live.update(self.task, completed=at, **({"stats": stats} if stats else {}))
        elif self.enabled and time.monotonic() - self.last_line >= PLAIN_LINE_SECONDS:
            self.last_line = time.monotonic()
            eta = (self.last_line - self.started) / max(at - self.done_before, 1) * (self.total - at)
            console.print(f"{self.name} {at}/{self.total} {stats}, ETA {int(eta) // 60}:{int(eta) % 60:02d}".strip())

    def done(self, line: str = "") -> None:
        if self.task is not None:
            self.live.remove_task(self.task)
            self.task = None
        if line and self.enabled:
            console.print(line)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def print_metrics(title: str, metrics: dict[str, float], where: str = "") -> None:
    table = Table(title=title, title_justify="left", min_width=len(title))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, figure(value))
    console.print(table)
    if where:
        console.print(where, soft_wrap=True)


def print_per_class(per_class: dict, most: int = 20) -> None:
    """Each class's precision, recall, F1 and support, and the class it is most often mistaken for; of more
    than `most` classes, the 10 with the lowest F1 (eval.json has them all)."""
    names, confusion = per_class["classes"], per_class["confusion_matrix"]
    rows, title = list(range(len(names))), "per class"
    if len(rows) > most:
        rows = sorted((i for i in rows if per_class["support"][i]), key=lambda i: per_class["f1"][i])[:10]
        title = f"per class: the {len(rows)} of {len(names)} with the lowest F1 (all in eval.json)"
    table = Table(title=title, title_justify="left")
    for column in ("class", "precision", "recall", "f1", "support", "most often mistaken for"):
        table.add_column(column, justify="right" if column in ("precision", "recall", "f1", "support") else "left")
    for i in rows:
        wrong = max(((count, j) for j, count in enumerate(confusion[i]) if j != i and count), default=None)
        table.add_row(names[i], *(f"{per_class[m][i]:.4f}" for m in ("precision", "recall", "f1")),
                      str(per_class["support"][i]), f"{names[wrong[1]]} ({wrong[0]})" if wrong else "")
    console.print(table)
