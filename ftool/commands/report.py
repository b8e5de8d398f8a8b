"""`ftool report <run dir | multirun dir> [<more> ...] [out=<dir>]`: what a run or a sweep found,
from the files the runs wrote (summary.json, metrics.jsonl, eval.json, .hydra/); torch is not needed.

One run: learning curves (losses, the monitored metric, the LR) as PNG files, the confusion matrix
of its last `ftool eval` (classifiers), and the metrics table. A sweep: a table of every job (its
swept settings, status, monitored metric, test metrics; best first), also as CSV and Markdown, the
metric against each swept setting and every job's curve overlaid; over trainer.seed (or the folds of
a cross-validation, data.fold), each setting's mean and standard deviation over them. Several folders (runs or sweeps)
are compared as the jobs of one sweep, as is every run in a tree of them (outputs/, multirun/).
Failed and interrupted runs are shown as such. Output:
<dir>/report/ for one folder, else out= (default: ./report).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import logging
import re
import shlex
import statistics
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import yaml
from rich.table import Table

from ftool.engine.progress import plain_console, warn
from ftool.errors import FtoolError
from ftool.rundir import (RunDir, evaluated_scope, read_json, read_records, read_saved, read_summary, sweep_jobs,
                          training_process)
from ftool.values import figure, is_number

SEED, FOLD = "trainer.seed", "data.fold"
# Settings whose values measure one setting again (another seed; another cross-validation fold): the
# report gives each setting's mean and spread over them.
REPEATS = {SEED: "seeds", FOLD: "folds"}
TERMINAL_SETTINGS = 6  # columns of settings a terminal table shows
console = plain_console(width=None if sys.stdout.isatty() else 200)  # a log or file has room


@dataclass
class Job:
    path: Path
    summary: dict
    records: list[dict]
    overrides: dict[str, str]
    config: dict  # the run's composed config, for settings other runs override and this one does not
    name: str  # in tables and legends: the job number in a sweep, the folder as given in a comparison

    @property
    def status(self) -> str:
        """As summary.json says, except `killed` for a run marked running that no process trains."""
        status = self.summary.get("status", "unknown")
        run = RunDir(self.path)
        return "killed" if status == "running" and run.lock.is_file() and not training_process(run) else status

    @property
    def best(self) -> dict:
        return self.summary.get("best") or {}

    def setting(self, key: str) -> str:
        """A setting as its override gave it, else as the run's config has it (`model`: its name)."""
        if key in self.overrides:
            return self.overrides[key]
        node = self.config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        node = node.get("name") if isinstance(node, dict) else node
        if isinstance(node, bool):
            return str(node).lower()  # as an override writes it
        return "" if node is None or isinstance(node, (dict, list)) else str(node)

    def latest(self) -> tuple[int | None, dict[str, float]]:
        """(epoch, figures) of a run without results yet (running, killed, interrupted): the train loss
        and validation figures of the last epoch logged."""
        last = {split: r for r in self.records for split in ("train", "val")
                if r.get("split") == split and ("train/loss" in r or split == "val")}
        figures = {k: v for r in last.values() for k, v in r.items() if k not in ("step", "epoch", "split")}
        return max((r["epoch"] for r in last.values()), default=None), figures

    def series(self, key: str, x: str = "epoch") -> tuple[list[int], list[float]]:
        """(x values, values) of a logged metric: per epoch (train/loss, val/...) or per step (lr)."""
        points = [(r[x], r[key]) for r in self.records if key in r]
        return [p for p, _ in points], [v for _, v in points]


def read_job(path: Path, name: str | None = None) -> Job:
    run = RunDir(path)
    summary = read_summary(run)
    if summary is None:
        raise FtoolError(f"report: cannot read {run.summary}")
    records = read_records(run.metrics)
    overrides_file = path / ".hydra" / "overrides.yaml"
    overrides = {}
    if overrides_file.is_file():
        for item in yaml.safe_load(overrides_file.read_text()) or []:
            key, _, value = str(item).partition("=")
            overrides[key] = _as_written(value)
    return Job(path, summary, records, overrides, read_saved(run) or {}, name or path.name)


def _as_written(value: str) -> str:
    """An override's value as the user wrote it: overrides.yaml keeps Hydra's grammar, which quotes
    ('中文.csv', as ftool quotes non-ASCII words for it) and escapes (pkg\\://...), and a sweep's job
    has its other settings in Python's words (False)."""
    if value in ("True", "False"):
        return value.lower()
    if value[:1] not in ("'", '"') and "\\" not in value:
        return value
    from hydra.errors import OverrideParseException

    try:
        plain = _override_parser().parse_overrides([f"key={value}"])[0].value()
    except OverrideParseException:
        return value
    return plain if isinstance(plain, str) else value


@functools.cache
def _override_parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()  # (0.16 s to make: once for every run's values)


def run(paths: list[str], out: str = "") -> Path:
    if not paths:
        raise FtoolError("report: give a run or multirun directory, or several to compare: ftool report <dir> ...")
    folders = [folder for path in paths for folder in _report_folders(path)]
    compared = len(folders) > 1
    jobs = [job for folder in folders for job in _jobs_in(folder, compared)]
    target = Path(out or ("report" if len(paths) > 1 else Path(paths[0]).expanduser() / "report")).expanduser()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, FileNotFoundError, NotADirectoryError) as e:  # a file there, a path through one
        raise FtoolError(f"{'out' if out else 'report'}: cannot make the folder {target} ({e.strerror})") from None
    if not compared and (Path(folders[0]).expanduser() / "summary.json").is_file():
        _report_run(jobs[0], target)
    else:
        _report_sweep(jobs, target, compared)
    console.print(f"report written to {target}", soft_wrap=True)
    return target


def _report_folders(path: str) -> list[str]:
    """`path` where it is a run or a sweep (runs in its subfolders); else every run in the tree below
    it, each named by its folder: Hydra's outputs/ (a folder per day, a run per time) and multirun/
    (a sweep per time) are compared run by run."""
    root = Path(path).expanduser()
    if not root.is_dir() or (root / "summary.json").is_file() or sweep_jobs(root):
        return [path]
    deeper = sorted(s.parent.relative_to(root) for s in root.glob("*/*/**/summary.json"))
    return [f"{path.rstrip('/')}/{run}" for run in deeper] or [path]


def _jobs_in(path: str, compared: bool) -> list[Job]:
    """A run directory's job, or a multirun directory's jobs; `compared` (with other folders): each
    named by its folder as given (`runs/a`, `multirun/lr/0`), not by its job number alone."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FtoolError(f"report: {path} is not a folder; give a run directory or a multirun directory")
    if (root / "summary.json").is_file():
        return [read_job(root, path.rstrip("/") if compared else None)]
    jobs = [read_job(job.path, f"{path.rstrip('/')}/{job.path.name}" if compared else None)
            for job in sweep_jobs(root)]
    if not jobs:
        raise FtoolError(f"report: {path} holds no summary.json, neither its own (a run) nor in "
                         f"its subfolders (a sweep's jobs) or below them")
    return jobs


def swept_keys(jobs: list[Job]) -> list[str]:
    """The settings some job overrides and the jobs do not all share."""
    return sorted({k for j in jobs for k in j.overrides if len({x.setting(k) for x in jobs}) > 1})


def by_setting(jobs: list[Job], keys: list[str]) -> dict[tuple, list[Job]]:
    """The jobs grouped by their values of `keys` (the settings other than the seed or fold), in order."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault(tuple(job.setting(k) for k in keys), []).append(job)
    return groups


def sweep_summary(sweep: Path) -> str | None:
    """The line a sweep ends with: its jobs, the best one and its settings, and how to see them all
    (None where no job has a best value)."""
    jobs = [read_job(job.path) for job in sweep_jobs(sweep)]
    scored = [j for j in jobs if j.best.get("value") is not None]
    if not scored:
        return None
    monitor, mode = scored[0].best["monitor"], scored[0].best.get("mode", "max")
    ranked = [j for j in scored if j.best["monitor"] == monitor]  # (a sweep over trainer.monitor: the first's)
    swept = swept_keys(jobs)
    repeats = [k for k in swept if k in REPEATS]
    pick = max if mode == "max" else min
    jobs_in = f"sweep: {len(jobs)} job{'s' if len(jobs) > 1 else ''} in {sweep}"
    compare = f"`ftool report {shlex.quote(str(sweep))}` compares them"
    if repeats:  # the best job of seeds or folds is a lucky one: the best setting by its mean over them
        others = [k for k in swept if k not in REPEATS]
        values_of = {setting: [j.best["value"] for j in group] for setting, group in by_setting(ranked, others).items()}
        setting, values = pick(values_of.items(), key=lambda item: statistics.fmean(item[1]))
        noun = REPEATS[repeats[0]] if len(repeats) == 1 else "runs"
        named = ", ".join(f"{k}={_short(v)}" for k, v in zip(others, setting))
        return (f"{jobs_in}; best mean {monitor} over {len(values)} {noun} {figure(statistics.fmean(values))}"
                f"{f' ({named})' if named else ''}; {compare}")
    best = pick(ranked, key=lambda j: j.best["value"])
    settings = ", ".join(f"{k}={_short(best.setting(k))}" for k in swept)
    return (f"{jobs_in}; best {monitor} {figure(best.best['value'])}: job {best.name}"
            f"{f' ({settings})' if settings else ''}; {compare}")


# -- one run -------------------------------------------------------------------------------------

def _report_run(job: Job, out: Path) -> None:
    monitor = job.best.get("monitor") or "val/accuracy"
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("train/loss", "val/loss"):
        epochs, values = job.series(key)
        if values:
            ax.plot(epochs, values, marker="o", label=key)
    _finish(fig, ax, "loss", "epoch", out / "loss.png")
    epochs, values = job.series(monitor)
    if values:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(epochs, values, marker="o", label=monitor)
        _finish(fig, ax, monitor, "epoch", out / f"{_file_name(monitor)}.png")
    steps, lrs = job.series("lr", x="step")
    if lrs:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(steps, lrs, label="lr")
        _finish(fig, ax, "learning rate", "step", out / "lr.png")

    evaluated = read_json(job.path / "eval.json")
    if evaluated and evaluated.get("per_class"):
        _confusion_png(evaluated, out / "confusion.png")

    metrics, title = job.summary.get("metrics"), f"{job.path}: {job.status}"
    if not metrics:
        epoch, metrics = job.latest()
        title += f", as of epoch {epoch}" if metrics else ""
    table = Table(title=title, title_justify="left", min_width=len(title))  # (a title on one line)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, figure(value))
    if job.best:
        table.add_row(f"best {job.best.get('monitor')} (epoch {job.best.get('epoch')})", figure(job.best["value"]))
    console.print(table)
    if job.summary.get("error"):  # below the table: a long reason would stretch its column of numbers
        console.print(f"error: {job.summary['error']}")


def _confusion_png(evaluated: dict, path: Path) -> None:
    """`ftool eval`'s confusion matrix (rows: targets): class names up to 30 classes, counts up to 15."""
    names, matrix = evaluated["per_class"]["classes"], evaluated["per_class"]["confusion_matrix"]
    k = len(names)
    side = min(4 + 0.45 * k, 14)
    fig, ax = _pyplot().subplots(figsize=(side + 1, side))
    fig.colorbar(ax.imshow(matrix, cmap="Blues"), ax=ax, fraction=0.046, pad=0.04)  # as tall as the matrix
    if k <= 30:
        ax.set_xticks(range(k), names, rotation=90 if k > 10 else 0)
        ax.set_yticks(range(k), names)
    if k <= 15:
        top = max(map(max, matrix)) or 1
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                ax.text(j, i, count, ha="center", va="center", color="white" if count > top / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("target")
    scope = evaluated_scope(evaluated.get("split", "test"), sum(map(sum, matrix)))
    ax.set_title(f"confusion matrix of {Path(evaluated.get('checkpoint', '?')).name}\n({scope})")  # (2 classes: narrow)
    _save(fig, path)


# -- a sweep -------------------------------------------------------------------------------------

def _report_sweep(jobs: list[Job], out: Path, compared: bool) -> None:
    """`compared`: runs from several folders, which may differ in many settings at once: no plot of
    the metric against each setting, and the curves are named by folder."""
    noun = "runs" if compared else "jobs"
    swept = swept_keys(jobs)
    monitor = next((j.best["monitor"] for j in jobs if j.best), "val/accuracy")
    mode = next((j.best.get("mode") for j in jobs if j.best), "max")
    tests = sorted({k for j in jobs for k in (j.summary.get("metrics") or {}) if k.startswith("test/")})

    def score(job: Job) -> float | None:  # (runs compared may monitor other metrics: those are not ranked)
        return job.best.get("value") if job.best.get("monitor") == monitor else None

    def rank(job: Job):
        value = score(job)
        if value is None:
            return (1, 0.0)
        return (0, -value if mode == "max" else value)

    ordered = sorted(jobs, key=rank)
    header = [noun[:-1], *swept, "status", monitor, *tests]
    rows = []
    for job in ordered:
        metrics = job.summary.get("metrics") or {}
        rows.append([job.name, *(job.setting(k) for k in swept), job.status,
                     _fmt(score(job)), *(_fmt(metrics.get(k)) for k in tests)])

    # The terminal gets the headline columns and, of many settings, those most jobs set; the CSV and
    # Markdown files have them all.
    settings = sorted(sorted(swept, key=lambda k: -sum(k in j.overrides for j in jobs))[:TERMINAL_SETTINGS])
    shown = [0, *(1 + swept.index(k) for k in settings),
             *(i for i in range(len(swept) + 1, len(header)) if not header[i].startswith("test/")
               or _headline(header[i], monitor))]
    hidden = f"; {len(swept) - len(settings)} more settings in jobs.csv" if len(swept) > len(settings) else ""
    table = Table(title=f"{len(jobs)} {noun}, best {monitor} first ({mode}){hidden}", title_justify="left")
    for i in shown:
        table.add_column(header[i], justify="right" if i > len(swept) + 1 else "left")
    for row in rows:
        table.add_row(*(_short(row[i]) for i in shown), style=None if row[len(swept) + 1] == "completed" else "red")
    console.print(table)
    _write_tables(out, "jobs", header, rows)

    repeats = [k for k in swept if k in REPEATS]
    if repeats:
        noun = REPEATS[repeats[0]] if len(repeats) == 1 else "runs"  # (seeds x folds: runs)
        _report_repeats(ordered, [k for k in swept if k not in REPEATS], noun, monitor, mode, score, tests, out)

    plt = _pyplot()
    scored = [j for j in jobs if score(j) is not None]
    for key in [] if compared else swept:
        fig, ax = plt.subplots(figsize=(6, 4))
        points = [(j.setting(key), score(j)) for j in scored]
        numeric = all(is_number(x) for x, _ in points)
        xs = [float(x) for x, _ in points] if numeric else [x for x, _ in points]
        ax.scatter(xs, [v for _, v in points])
        if numeric and all(x > 0 for x in xs) and max(xs) / min(xs) >= 10:  # a decade or more: LRs, say
            ax.set_xscale("log")
        ax.set_ylabel(f"best {monitor}")
        _finish(fig, ax, f"{monitor} by {key}", key, out / f"{_file_name(key)}.png", legend=False)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = curve_labels(jobs, [] if compared else swept)
    for job in jobs:
        epochs, values = job.series(monitor)
        if values:
            ax.plot(epochs, values, marker=".", label=labels[job.name])
    _finish(fig, ax, f"{monitor}, every {noun[:-1]}", "epoch", out / "curves.png")


LEGEND_LABEL_CHARS = 50  # longer: the legend would crowd out the plot


def curve_labels(jobs: list[Job], swept: list[str]) -> dict[str, str]:
    """Each job's curve is labelled by its swept settings (`optimizer.lr=0.01, model=mlp`) where they
    are short; else by its name, which the jobs table pairs with its settings."""
    labels = {job.name: ", ".join(f"{k}={job.setting(k)}" for k in swept) for job in jobs}
    if all(labels.values()) and max(map(len, labels.values())) <= LEGEND_LABEL_CHARS:
        return labels
    return {job.name: job.name for job in jobs}


def _report_repeats(ordered: list[Job], others: list[str], noun: str, monitor: str, mode: str, score,
                    tests: list[str], out: Path) -> None:
    """Jobs that differ only in trainer.seed (or data.fold) are one setting measured several times: its
    mean and standard deviation (n - 1) over the seeds (`noun`) say whether one setting beats another or
    only drew a luckier seed (or fold). Jobs without a best value (failed, or no validation) are not counted."""
    groups = by_setting([job for job in ordered if score(job) is not None], others)
    if not any(len(group) > 1 for group in groups.values()):
        return

    def values(group: list[Job], metric: str) -> list[float]:
        if metric == monitor:
            return [score(j) for j in group]
        return [v for j in group if (v := (j.summary.get("metrics") or {}).get(metric)) is not None]

    sign = -1 if mode == "max" else 1
    ranked = sorted(groups.items(), key=lambda item: sign * statistics.fmean(values(item[1], monitor)))
    metrics = [monitor, *tests]
    header = [*others, noun, *(f"{m} {stat}" for m in metrics for stat in ("mean", "std"))]
    rows = [[*setting, str(len(group)), *(part for m in metrics for part in _mean_and_std(values(group, m)))]
            for setting, group in ranked]
    counts = sorted({len(group) for group in groups.values()})
    how_many = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    table = Table(title=f"{len(rows)} setting{'s' if len(rows) > 1 else ''} over {how_many} {noun}: mean and "
                        f"standard deviation, best mean first", title_justify="left")
    shown = [i for i, name in enumerate(header) if i <= len(others) or _headline(name.rsplit(" ", 1)[0], monitor)]
    for i in shown:
        table.add_column(header[i], justify="right" if i >= len(others) else "left")
    for row in rows:
        table.add_row(*(_short(row[i]) for i in shown))
    console.print(table)
    _write_tables(out, noun, header, rows)


def _mean_and_std(values: list[float]) -> tuple[str, str]:
    """(mean, sample standard deviation) as the tables show them; one value has no spread."""
    if not values:
        return "", ""
    return _fmt(statistics.fmean(values)), _fmt(statistics.stdev(values)) if len(values) > 1 else ""


# -- helpers -------------------------------------------------------------------------------------

def _headline(metric: str, monitor: str) -> bool:
    """The metrics a terminal table shows (the CSV and Markdown files have every one)."""
    return metric in (monitor, "test/loss", monitor.replace("val/", "test/", 1))


def _write_tables(out: Path, stem: str, header: list[str], rows: list[list[str]]) -> None:
    """<stem>.csv for a spreadsheet, <stem>.md to paste into a README or an issue."""
    with open(out / f"{stem}.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows])
    markdown = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}", *(f"| {' | '.join(r)} |" for r in rows)]
    (out / f"{stem}.md").write_text("\n".join(markdown) + "\n")


# Fonts with Chinese, Japanese and Korean letters, of which matplotlib's own (DejaVu Sans) has none.
_CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
              "Droid Sans Fallback", "Microsoft YaHei", "SimHei", "PingFang SC", "Hiragino Sans GB", "Malgun Gothic",
              "Arial Unicode MS")


@functools.cache
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    matplotlib.rcParams["text.parse_math"] = False  # names as written: a class "$5-$10" was drawn "5 − 10"
    import matplotlib.pyplot as plt

    # Names in any script: matplotlib falls back letter by letter along the families of font.family, here
    # to the fonts this machine has for Chinese, Japanese and Korean (its own DejaVu Sans has none).
    matplotlib.rcParams["font.family"] = ["DejaVu Sans", *_cjk_fonts()]
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)  # (a font's nearest weight: "now using 500")
    return plt


def _cjk_fonts() -> list[str]:
    """The fonts of _CJK_FONTS this machine has. matplotlib's list of the machine's fonts is made at
    its first use and kept, so where it has none, fonts installed since are added to it."""
    from matplotlib import font_manager

    def known() -> list[str]:
        installed = {font.name for font in font_manager.fontManager.ttflist}
        return [name for name in _CJK_FONTS if name in installed]

    if not known():
        listed = {font.fname for font in font_manager.fontManager.ttflist}
        for path in set(font_manager.findSystemFonts()) - listed:
            with contextlib.suppress(Exception):  # (a file FreeType cannot read)
                font_manager.fontManager.addfont(path)
    return known()


def _save(fig, path: Path) -> None:
    """Lay out, write and close `fig`. Letters that no font here has (class names in Chinese where no
    Chinese font is installed) are drawn as boxes: one warning says so, for matplotlib's one per letter."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    missing = {}
    for w in caught:
        glyph = re.match(r"Glyph (\d+) .* missing from font", str(w.message))
        if glyph:
            missing[chr(int(glyph.group(1)))] = None
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if missing:
        letters = "".join(list(missing)[:10]) + ("..." if len(missing) > 10 else "")
        warn(f"{path}: no font on this machine has the letters {letters}, drawn as boxes; install one that "
             f"has them (Chinese, Japanese, Korean: Noto Sans CJK, on Debian and Ubuntu the package fonts-noto-cjk)")


def _finish(fig, ax, title: str, xlabel: str, path: Path, legend: bool = True) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title)
    ax.set_xlabel(xlabel)
    if xlabel in ("epoch", "step"):
        if 0 <= ax.dataLim.width < 1:  # one epoch: widen, or the ticks would be fractions of it (none: -inf)
            middle = round(ax.dataLim.x0)
            ax.set_xlim(middle - 1, middle + 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    _save(fig, path)


def _file_name(key: str) -> str:
    return key.replace("/", "_").replace(".", "_")


def _fmt(value) -> str:
    return "" if value is None else figure(value)


def _short(text: str) -> str:
    """0.0038322168504927897 -> 0.003832: the terminal table stays narrow (the files keep all digits)."""
    return f"{float(text):.4g}" if len(text) > 7 and is_number(text) else text
