"""`ftool report <run dir | multirun dir> [<more> ...] [out=<dir>]`: what a run or a sweep found, from
the files the runs wrote (summary.json, metrics.jsonl, eval.json, .hydra/overrides.yaml); no torch.

One run: learning curves (losses, the monitored metric, the LR) as PNG files, the confusion matrix of
its last `ftool eval`, and its metrics. A sweep: a table of every job (swept settings, status,
monitored metric, test metrics; best first), also as CSV and Markdown, the metric against each swept
setting and every job's curve; over trainer.seed (or data.fold), each setting's mean and standard
deviation. Several folders, or a tree of runs (outputs/), are compared as the jobs of one sweep.
Output: <dir>/report/ for one folder, else out= (default: ./report).
"""

from __future__ import annotations

import csv
import shlex
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from rich.table import Table

from ftool.engine.progress import _Console, figure, is_number
from ftool.errors import FtoolError
from ftool.rundir import RunDir, evaluated_scope, read_json, read_records, sweep_jobs

REPEATS = {"trainer.seed": "seeds", "data.fold": "folds"}  # settings that measure one setting again
TERMINAL_SETTINGS = 6  # columns of settings a terminal table shows (the files have all)
console = _Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 200)


@dataclass
class Job:
    path: Path
    summary: dict
    records: list[dict]
    overrides: dict[str, str]
    name: str  # in tables and legends: the job number in a sweep, the folder as given in a comparison

    @property
    def status(self) -> str:
        return self.summary.get("status", "unknown")

    @property
    def best(self) -> dict:
        return self.summary.get("best") or {}

    def setting(self, key: str) -> str:
        """A setting as its override gave it, else as the run's config has it (`model`: its name)."""
        if key in self.overrides:
            return self.overrides[key]
        node = self.summary.get("config") or {}
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        node = node.get("name") if isinstance(node, dict) else node
        return str(node).lower() if isinstance(node, bool) else "" if node is None or isinstance(node, (dict, list)) \
            else str(node)

    def series(self, key: str, x: str = "epoch") -> tuple[list[int], list[float]]:
        """(x values, values) of a logged metric: per epoch (train/loss, val/...) or per step (lr)."""
        points = [(r[x], r[key]) for r in self.records if key in r]
        return [p for p, _ in points], [v for _, v in points]


def read_job(path: Path, name: str | None = None) -> Job:
    summary = read_json(RunDir(path).summary)
    if summary is None:
        raise FtoolError(f"report: cannot read {RunDir(path).summary}")
    overrides_file = path / ".hydra" / "overrides.yaml"
    items = yaml.safe_load(overrides_file.read_text()) or [] if overrides_file.is_file() else []
    overrides = {k.lstrip("+~"): {"True": "true", "False": "false"}.get(v, v.strip("'\""))
                 for k, _, v in (str(item).partition("=") for item in items)}
    return Job(path, summary, read_records(RunDir(path).metrics), overrides, name or path.name)


def run(paths: list[str], out: str = "") -> Path:
    if not paths:
        raise FtoolError("report: give a run or multirun directory, or several to compare: ftool report <dir> ...")
    folders = [folder for path in paths for folder in _report_folders(path)]
    compared = len(folders) > 1
    jobs = [job for folder in folders for job in _jobs_in(folder, compared)]
    target = Path(out or ("report" if len(paths) > 1 else Path(paths[0]).expanduser() / "report")).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    if not compared and (Path(folders[0]).expanduser() / "summary.json").is_file():
        _report_run(jobs[0], target)
    else:
        _report_sweep(jobs, target, compared)
    console.print(f"report written to {target}", soft_wrap=True)
    return target


def _report_folders(path: str) -> list[str]:
    """`path` where it is a run or a sweep; else every run in the tree below it (outputs/: a folder per
    day, a run per time), each named by its folder."""
    root = Path(path).expanduser()
    if not root.is_dir() or (root / "summary.json").is_file() or sweep_jobs(root):
        return [path]
    deeper = sorted(s.parent.relative_to(root) for s in root.glob("*/*/**/summary.json"))
    return [f"{path.rstrip('/')}/{run}" for run in deeper] or [path]


def _jobs_in(path: str, compared: bool) -> list[Job]:
    root = Path(path).expanduser()
    if (root / "summary.json").is_file():
        return [read_job(root, path.rstrip("/") if compared else None)]
    jobs = [read_job(job.path, f"{path.rstrip('/')}/{job.path.name}" if compared else None) for job in sweep_jobs(root)]
    if not jobs:
        raise FtoolError(f"report: {path} holds no summary.json, neither its own (a run) nor its subfolders' (a sweep)")
    return jobs


def swept_keys(jobs: list[Job]) -> list[str]:
    """The settings some job overrides and the jobs do not all share."""
    return sorted({k for j in jobs for k in j.overrides if len({x.setting(k) for x in jobs}) > 1})


def by_setting(jobs: list[Job], keys: list[str]) -> dict[tuple, list[Job]]:
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault(tuple(job.setting(k) for k in keys), []).append(job)
    return groups


def sweep_summary(sweep: Path) -> str | None:
    """The line a sweep ends with: its jobs and the best one (over seeds or folds: the best setting's mean)."""
    jobs = [read_job(job.path) for job in sweep_jobs(sweep)]
    scored = [j for j in jobs if j.best.get("value") is not None]
    if not scored:
        return None
    monitor, pick = scored[0].best["monitor"], max if scored[0].best.get("mode", "max") == "max" else min
    ranked = [j for j in scored if j.best["monitor"] == monitor]
    swept = swept_keys(jobs)
    head = f"sweep: {len(jobs)} job{'s' if len(jobs) > 1 else ''} in {sweep}"
    tail = f"`ftool report {shlex.quote(str(sweep))}` compares them"
    if any(k in REPEATS for k in swept):
        others = [k for k in swept if k not in REPEATS]
        setting, group = pick(by_setting(ranked, others).items(),
                              key=lambda item: statistics.fmean(j.best["value"] for j in item[1]))
        named = ", ".join(f"{k}={_short(v)}" for k, v in zip(others, setting))
        return (f"{head}; best mean {monitor} over {len(group)} {REPEATS[next(k for k in swept if k in REPEATS)]} "
                f"{figure(statistics.fmean(j.best['value'] for j in group))}{f' ({named})' if named else ''}; {tail}")
    best = pick(ranked, key=lambda j: j.best["value"])
    settings = ", ".join(f"{k}={_short(best.setting(k))}" for k in swept)
    return f"{head}; best {monitor} {figure(best.best['value'])}: job {best.name}{f' ({settings})' if settings else ''}; {tail}"


def _report_run(job: Job, out: Path) -> None:
    monitor = job.best.get("monitor") or "val/accuracy"
    for keys, title, x, name in ((("train/loss", "val/loss"), "loss", "epoch", "loss"),
                                 ((monitor,), monitor, "epoch", _file_name(monitor)), (("lr",), "learning rate", "step", "lr")):
        curves = {key: job.series(key, x) for key in keys if job.series(key, x)[1]}
        if curves:
            fig, ax = _pyplot().subplots(figsize=(6, 4))
            for key, (xs, values) in curves.items():
                ax.plot(xs, values, marker="o" if x == "epoch" else None, label=key)
            _finish(fig, ax, title, x, out / f"{name}.png")
    evaluated = read_json(job.path / "eval.json")
    if evaluated and evaluated.get("per_class"):
        _confusion_png(evaluated, out / "confusion.png")
    metrics = job.summary.get("metrics") or {}
    title = f"{job.path}: {job.status}"
    if not metrics:  # a run without results yet: its last epoch's figures
        last = [r for r in job.records if r.get("split") in ("train", "val") and "train/loss_step" not in r][-2:]
        metrics = {k: v for r in last for k, v in r.items() if k not in ("step", "epoch", "split")}
        title += f", as of epoch {last[-1]['epoch']}" if last else ""
    table = Table(title=title, title_justify="left", min_width=len(title))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, figure(value))
    if job.best:
        table.add_row(f"best {job.best.get('monitor')} (epoch {job.best.get('epoch')})", figure(job.best["value"]))
    console.print(table)
    if job.summary.get("error"):
        console.print(f"error: {job.summary['error']}")


def _confusion_png(evaluated: dict, path: Path) -> None:
    """`ftool eval`'s confusion matrix (rows: targets): class names up to 30 classes, counts up to 15."""
    names, matrix = evaluated["per_class"]["classes"], evaluated["per_class"]["confusion_matrix"]
    k, side = len(names), min(4 + 0.45 * len(names), 14)
    fig, ax = _pyplot().subplots(figsize=(side + 1, side))
    fig.colorbar(ax.imshow(matrix, cmap="Blues"), ax=ax, fraction=0.046, pad=0.04)
    if k <= 30:
        ax.set_xticks(range(k), [_label(n) for n in names], rotation=90 if k > 10 else 0)
        ax.set_yticks(range(k), [_label(n) for n in names])
    for i, row in enumerate(matrix if k <= 15 else []):
        for j, count in enumerate(row):
            ax.text(j, i, count, ha="center", va="center", color="white" if count > max(map(max, matrix)) / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("target")
    scope = evaluated_scope(evaluated.get("split", "test"), sum(map(sum, matrix)))
    ax.set_title(_label(f"confusion matrix of {Path(evaluated.get('checkpoint', '?')).name}\n({scope})"))
    _save(fig, path)


def _report_sweep(jobs: list[Job], out: Path, compared: bool) -> None:
    """`compared`: runs from several folders, which may differ in many settings: no plot against each
    setting, and the curves are named by folder."""
    noun, swept = "runs" if compared else "jobs", swept_keys(jobs)
    monitor = next((j.best["monitor"] for j in jobs if j.best), "val/accuracy")
    mode = next((j.best.get("mode") for j in jobs if j.best), "max")
    tests = sorted({k for j in jobs for k in (j.summary.get("metrics") or {}) if k.startswith("test/")})

    def score(job: Job) -> float | None:  # (runs compared may monitor other metrics: those are not ranked)
        return job.best.get("value") if job.best.get("monitor") == monitor else None

    ordered = sorted(jobs, key=lambda j: (1, 0.0) if score(j) is None else (0, -score(j) if mode == "max" else score(j)))
    header = [noun[:-1], *swept, "status", monitor, *tests]
    rows = [[j.name, *(j.setting(k) for k in swept), j.status, _fmt(score(j)),
             *(_fmt((j.summary.get("metrics") or {}).get(k)) for k in tests)] for j in ordered]
    settings = sorted(sorted(swept, key=lambda k: -sum(k in j.overrides for j in jobs))[:TERMINAL_SETTINGS])
    shown = [0, *(1 + swept.index(k) for k in settings),
             *(i for i in range(len(swept) + 1, len(header)) if not header[i].startswith("test/")
               or _headline(header[i], monitor))]
    hidden = f"; {len(swept) - len(settings)} more settings in jobs.csv" if len(swept) > len(settings) else ""
    _print_table(f"{len(jobs)} {noun}, best {monitor} first ({mode}){hidden}", header, rows, shown, len(swept) + 1,
                 red=[row[len(swept) + 1] != "completed" for row in rows])
    _write_tables(out, "jobs", header, rows)
    repeats = [k for k in swept if k in REPEATS]
    if repeats:
        _report_repeats(ordered, [k for k in swept if k not in REPEATS],
                        REPEATS[repeats[0]] if len(repeats) == 1 else "runs", monitor, mode, score, tests, out)
    _sweep_plots(jobs, [] if compared else swept, monitor, score, noun, out)


def _sweep_plots(jobs: list[Job], swept: list[str], monitor: str, score, noun: str, out: Path) -> None:
    plt = _pyplot()
    scored = [j for j in jobs if score(j) is not None]
    for key in swept:
        fig, ax = plt.subplots(figsize=(6, 4))
        points = [(j.setting(key), score(j)) for j in scored]
        numeric = all(is_number(x) for x, _ in points)
        xs = [float(x) if numeric else _label(x) for x, _ in points]
        ax.scatter(xs, [v for _, v in points])
        if numeric and xs and min(xs) > 0 and max(xs) / min(xs) >= 10:  # a decade or more: LRs, say
            ax.set_xscale("log")
        ax.set_ylabel(f"best {monitor}")
        _finish(fig, ax, f"{monitor} by {key}", key, out / f"{_file_name(key)}.png", legend=False)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = curve_labels(jobs, swept)
    for job in jobs:
        epochs, values = job.series(monitor)
        if values:
            ax.plot(epochs, values, marker=".", label=_label(labels[job.name]))
    _finish(fig, ax, f"{monitor}, every {noun[:-1]}", "epoch", out / "curves.png")


def curve_labels(jobs: list[Job], swept: list[str]) -> dict[str, str]:
    """Each curve is labelled by its job's swept settings where they are short, else by the job's name."""
    labels = {job.name: ", ".join(f"{k}={job.setting(k)}" for k in swept) for job in jobs}
    return labels if all(labels.values()) and max(map(len, labels.values())) <= 50 else {j.name: j.name for j in jobs}


def _report_repeats(ordered: list[Job], others: list[str], noun: str, monitor: str, mode: str, score,
                    tests: list[str], out: Path) -> None:
    """Jobs that differ only in trainer.seed (or data.fold) measure one setting several times: its mean and
    standard deviation over them say whether it beats another or only drew a luckier seed (or fold)."""
    groups = by_setting([job for job in ordered if score(job) is not None], others)
    if not any(len(group) > 1 for group in groups.values()):
        return

    def values(group: list[Job], metric: str) -> list[float]:
        return [v for j in group if (v := score(j) if metric == monitor else (j.summary.get("metrics") or {}).get(metric))
                is not None]

    ranked = sorted(groups.items(), key=lambda item: (-1 if mode == "max" else 1) * statistics.fmean(values(item[1], monitor)))
    metrics = [monitor, *tests]
    header = [*others, noun, *(f"{m} {stat}" for m in metrics for stat in ("mean", "std"))]
    rows = [[*setting, str(len(group)), *(part for m in metrics for part in _mean_and_std(values(group, m)))]
            for setting, group in ranked]
    shown = [i for i, name in enumerate(header) if i <= len(others) or _headline(name.rsplit(" ", 1)[0], monitor)]
    _print_table(f"{len(rows)} setting(s) over {noun}: mean and standard deviation, best mean first", header, rows,
                 shown, len(others))
    _write_tables(out, noun, header, rows)


def _print_table(title: str, header: list[str], rows: list[list[str]], shown: list[int], right_from: int,
                 red: list[bool] | None = None) -> None:
    table = Table(title=title, title_justify="left")
    for i in shown:
        table.add_column(header[i], justify="right" if i >= right_from else "left")
    for n, row in enumerate(rows):
        table.add_row(*(_short(row[i]) for i in shown), style="red" if red and red[n] else None)
    console.print(table)


def _mean_and_std(values: list[float]) -> tuple[str, str]:
    if not values:
        return "", ""
    return _fmt(statistics.fmean(values)), _fmt(statistics.stdev(values)) if len(values) > 1 else ""


def _headline(metric: str, monitor: str) -> bool:
    """The metrics a terminal table shows (the CSV and Markdown files have every one)."""
    return metric in (monitor, "test/loss", monitor.replace("val/", "test/", 1))


def _write_tables(out: Path, stem: str, header: list[str], rows: list[list[str]]) -> None:
    """<stem>.csv for a spreadsheet, <stem>.md to paste into a README or an issue."""
    with open(out / f"{stem}.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows])
    markdown = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}", *(f"| {' | '.join(r)} |" for r in rows)]
    (out / f"{stem}.md").write_text("\n".join(markdown) + "\n")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)


def _finish(fig, ax, title: str, xlabel: str, path: Path, legend: bool = True) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_title(_label(title))
    ax.set_xlabel(_label(xlabel))
    if xlabel in ("epoch", "step"):
        if 0 <= ax.dataLim.width < 1:  # one epoch: widen, or the ticks would be fractions of it
            ax.set_xlim(round(ax.dataLim.x0) - 1, round(ax.dataLim.x0) + 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    _save(fig, path)


def _label(text: str) -> str:
    """A name as written: matplotlib reads $...$ as TeX (a class "$5-$10")."""
    return str(text).replace("$", r"\$")


def _file_name(key: str) -> str:
    return key.replace("/", "_").replace(".", "_")


def _fmt(value) -> str:
    return "" if value is None else figure(value)


def _short(text: str) -> str:
    """0.0038322168504927897 -> 0.003832: the terminal table stays narrow (the files keep all digits)."""
    return f"{float(text):.4g}" if len(text) > 7 and is_number(text) else text
