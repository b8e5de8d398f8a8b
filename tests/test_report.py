"""`ftool report` on a real sweep through the CLI, and on run dirs that failed or were interrupted."""

import csv
import json
import warnings

import pytest
import yaml

from tests.conftest import assert_one_line_error, ftool, read_json

PNG = b"\x89PNG\r\n\x1a\n"


def is_png(path):
    return path.is_file() and path.read_bytes()[:8] == PNG


def test_report_of_a_four_job_grid_ranks_the_jobs_and_draws_them(workdir):
    sweep = workdir / "sweep"
    result = ftool("train", "-m", "model=simplecnn,mlp", "optimizer.lr=0.01,0.001", "trainer.epochs=2",
                   "trainer.progress=false", f"hydra.sweep.dir={sweep}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    values = {p.name: read_json(p / "summary.json")["best"]["value"] for p in sweep.iterdir() if p.name.isdigit()}
    assert len(values) == 4
    best = max(values, key=values.get)  # the sweep's last line names it and its swept settings
    model, lr = (o for o in yaml.safe_load((sweep / best / ".hydra" / "overrides.yaml").read_text())
                 if o.startswith(("model=", "optimizer.lr=")))
    assert result.stdout.strip().splitlines()[-1] == (f"sweep: 4 jobs in {sweep}; best val/accuracy {values[best]:.4f}: "
                                                      f"job {best} ({model}, {lr}); `ftool report {sweep}` compares them")

    result = ftool("report", str(sweep), cwd=workdir)
    assert result.returncode == 0, result.stderr
    out = sweep / "report"
    rows = list(csv.reader((out / "jobs.csv").open()))
    assert rows[0][:5] == ["job", "model", "optimizer.lr", "status", "val/accuracy"]
    assert "test/accuracy" in rows[0] and len(rows) == 5
    assert [r[0] for r in rows[1:]] == sorted(values, key=values.get, reverse=True)  # best first
    assert float(rows[1][4]) == round(max(values.values()), 4) and {r[3] for r in rows[1:]} == {"completed"}
    assert (out / "jobs.md").read_text().splitlines()[2].startswith(f"| {rows[1][0]} | ")
    for png in ("curves.png", "model.png", "optimizer_lr.png"):
        assert is_png(out / png), png
    assert "4 jobs, best val/accuracy first" in result.stdout
    assert not (out / "seeds.csv").exists()  # no trainer.seed swept

    one = sweep / "0"
    result = ftool("report", str(one), cwd=workdir)
    assert result.returncode == 0 and "test/accuracy" in result.stdout
    for png in ("loss.png", "val_accuracy.png", "lr.png"):
        assert is_png(one / "report" / png), png
    assert not (one / "report" / "confusion.png").exists()  # drawn from eval.json, which `ftool eval` writes
    assert ftool("eval", f"ckpt={one}", "trainer.progress=false", cwd=workdir).returncode == 0
    assert ftool("report", str(one), cwd=workdir).returncode == 0 and is_png(one / "report" / "confusion.png")


def write_run(path, status, best=None, epochs=(), overrides=(), error=None, config=None, metrics=None):
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(json.dumps(config or {}))  # (JSON is YAML)
    summary = {"command": "train", "status": status, "metrics": metrics or {}, "best": best}
    if error:
        summary["error"] = error
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "metrics.jsonl").write_text("".join(
        json.dumps({"step": e, "epoch": e, "split": "val", "val/loss": v}) + "\n" for e, v in epochs))
    (path / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))


def test_report_shows_failed_and_interrupted_jobs_after_the_scored_ones(workdir):
    sweep = workdir / "sweep"
    best = {"monitor": "val/loss", "mode": "min", "epoch": 2}
    write_run(sweep / "0", "completed", {**best, "value": 0.5}, [(1, 0.7), (2, 0.5)], ["optimizer.lr=0.1"])
    write_run(sweep / "1", "failed", None, [], ["optimizer.lr=-1"], error="optimizer.lr: must be > 0")
    write_run(sweep / "2", "interrupted", {**best, "value": 0.3}, [(1, 0.4), (2, 0.3)], ["optimizer.lr=0.01"])
    result = ftool("report", str(sweep), cwd=workdir)
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader((sweep / "report" / "jobs.csv").open()))
    assert [(r[0], r[2]) for r in rows[1:]] == [("2", "interrupted"), ("0", "completed"), ("1", "failed")]
    assert is_png(sweep / "report" / "curves.png")

    result = ftool("report", str(sweep / "1"), cwd=workdir)
    assert result.returncode == 0 and "failed" in result.stdout
    assert "\nerror: optimizer.lr: must be > 0\n" in result.stdout  # under the table, not stretching it


def test_a_sweep_over_seeds_gives_each_settings_mean_and_spread(workdir):
    sweep = workdir / "seeds"
    best = {"monitor": "val/loss", "mode": "min", "epoch": 1}
    jobs = [("0.1", 0, 0.50, 0.9), ("0.1", 1, 0.70, 0.7), ("0.1", 2, 0.60, 0.8),  # lr 0.1: mean 0.6, std 0.1
            ("0.01", 0, 0.40, 0.6), ("0.01", 1, None, None), ("0.01", 2, 0.44, 0.5),  # seed 1 failed
            ("0.001", 0, 0.30, 0.95)]  # one seed only: no spread
    for i, (lr, seed, value, accuracy) in enumerate(jobs):
        write_run(sweep / str(i), "failed" if value is None else "completed", value and {**best, "value": value},
                  [(1, value)] if value else [], [f"optimizer.lr={lr}", f"trainer.seed={seed}"],
                  metrics=accuracy and {"test/accuracy": accuracy, "test/loss": value + 0.1})
    result = ftool("report", str(sweep), cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "3 settings over 1-3 seeds: mean and standard deviation, best mean first" in result.stdout
    rows = list(csv.reader((sweep / "report" / "seeds.csv").open()))
    assert rows == [
        ["optimizer.lr", "seeds", "val/loss mean", "val/loss std", "test/accuracy mean", "test/accuracy std",
         "test/loss mean", "test/loss std"],
        ["0.001", "1", "0.3000", "", "0.9500", "", "0.4000", ""],  # lowest mean loss first
        ["0.01", "2", "0.4200", "0.0283", "0.5500", "0.0707", "0.5200", "0.0283"],  # the failed seed not counted
        ["0.1", "3", "0.6000", "0.1000", "0.8000", "0.1000", "0.7000", "0.1000"]]
    assert (sweep / "report" / "seeds.md").read_text().splitlines()[2].startswith("| 0.001 | 1 | 0.3000 |")


def test_cross_validation_folds_test_every_sample_once_and_the_report_gives_their_mean(workdir):
    """`data.folds=3 data.fold=0,1,2`: each fold's test split is a third of the data, and a sweep over the
    folds is reported as the seeds are (a table of every setting's mean and spread over its folds)."""
    sweep = workdir / "cv"
    result = ftool("train", "-m", "data.folds=3", "data.fold=0,1,2", "optimizer.lr=0.01,0.003", "trainer.epochs=2",
                   "trainer.progress=false", f"hydra.sweep.dir={sweep}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    accuracy, best = {}, {}  # lr -> the test accuracy and the best val/accuracy of each fold
    for i in range(6):
        lr = next(o for o in yaml.safe_load((sweep / str(i) / ".hydra" / "overrides.yaml").read_text())
                  if o.startswith("optimizer.lr=")).split("=")[1]
        summary = read_json(sweep / str(i) / "summary.json")
        accuracy.setdefault(lr, []).append(summary["metrics"]["test/accuracy"])
        best.setdefault(lr, []).append(summary["best"]["value"])
    # the closing line names the best setting by its mean over the folds (the best job was a lucky fold)
    lr = max(best, key=lambda k: sum(best[k]))
    assert result.stdout.strip().splitlines()[-1] == (
        f"sweep: 6 jobs in {sweep}; best mean val/accuracy over 3 folds {sum(best[lr]) / 3:.4f} (optimizer.lr={lr}); "
        f"`ftool report {sweep}` compares them")
    result = ftool("report", str(sweep), cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "2 settings over 3 folds: mean and standard deviation, best mean first" in result.stdout
    rows = list(csv.reader((sweep / "report" / "folds.csv").open()))
    assert rows[0][:4] == ["optimizer.lr", "folds", "val/accuracy mean", "val/accuracy std"]
    column = rows[0].index("test/accuracy mean")
    assert sorted(row[0] for row in rows[1:]) == sorted(accuracy) == ["0.003", "0.01"]
    for row in rows[1:]:
        assert row[1] == "3" and float(row[column]) == pytest.approx(sum(accuracy[row[0]]) / 3, abs=1e-4)
    assert not (sweep / "report" / "seeds.csv").exists()


def test_report_compares_runs_and_sweeps_from_several_folders(workdir):
    best = {"monitor": "val/loss", "mode": "min", "epoch": 2}

    def config(model, lr, progress):
        return {"model": {"name": model, "hidden": [128, 64]}, "optimizer": {"lr": lr}, "trainer": {"progress": progress}}

    # Each setting one run overrides is read from the other's config: `model` by its name, booleans as overrides write them.
    write_run(workdir / "runs" / "a", "completed", {**best, "value": 0.5}, [(1, 0.7), (2, 0.5)], ["model=mlp"],
              config=config("mlp", 0.001, True))
    write_run(workdir / "runs" / "b", "completed", {**best, "value": 0.3}, [(1, 0.4), (2, 0.3)],
              ["optimizer.lr=0.01", "trainer.progress=false"], config=config("simplecnn", 0.01, False))
    write_run(workdir / "lr" / "0", "failed", None, [], ["optimizer.lr=-1"], config=config("simplecnn", -1, True))
    write_run(workdir / "lr" / "1", "completed", {"monitor": "val/accuracy", "mode": "max", "epoch": 1, "value": 0.9},
              [(1, 0.2)], ["optimizer.lr=0.1"], config=config("simplecnn", 0.1, True))
    result = ftool("report", "runs/a", "runs/b/", "lr", "out=compared", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "4 runs, best val/loss first (min)" in result.stdout
    rows = list(csv.reader((workdir / "compared" / "jobs.csv").open()))
    assert rows == [["run", "model", "optimizer.lr", "trainer.progress", "status", "val/loss"],
                    ["runs/b", "simplecnn", "0.01", "false", "completed", "0.3000"],
                    ["runs/a", "mlp", "0.001", "true", "completed", "0.5000"],
                    ["lr/0", "simplecnn", "-1", "true", "failed", ""],
                    ["lr/1", "simplecnn", "0.1", "true", "completed", ""]]  # another monitor: not ranked with these
    assert sorted(p.name for p in (workdir / "compared").iterdir()) == ["curves.png", "jobs.csv", "jobs.md"]
    assert is_png(workdir / "compared" / "curves.png")


def test_report_of_a_tree_of_runs_compares_every_run_in_it(workdir):
    """Hydra's outputs/ (a folder per day, a run per time) and multirun/ (a sweep per time)."""
    best = {"monitor": "val/loss", "mode": "min", "epoch": 1}
    for i, run in enumerate(("outputs/day1/10-00", "outputs/day1/11-00", "outputs/day2/09-00")):
        write_run(workdir / run, "completed", {**best, "value": 0.5 - i / 10}, [(1, 0.5 - i / 10)],
                  [f"optimizer.lr=0.0{i + 1}", *(f"trainer.k{n}={i}" for n in range(7))])
    result = ftool("report", "outputs", cwd=workdir)
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader((workdir / "outputs" / "report" / "jobs.csv").open()))
    assert [r[0] for r in rows] == ["run", "outputs/day2/09-00", "outputs/day1/11-00", "outputs/day1/10-00"]
    assert rows[0][1:] == ["optimizer.lr", *(f"trainer.k{n}" for n in range(7)), "status", "val/loss"]
    header = result.stdout.splitlines()[2]  # of 8 settings, the terminal shows 6; the files all
    assert "3 runs, best val/loss first (min); 2 more settings in jobs.csv" in result.stdout
    assert "trainer.k4" in header and "trainer.k5" not in header
    assert is_png(workdir / "outputs" / "report" / "curves.png")
    for job in ("0", "1"):
        write_run(workdir / "multirun" / "day1" / "12-00" / job, "completed", {**best, "value": 0.4}, [(1, 0.4)],
                  [f"model=m{job}"])
    assert ftool("report", "multirun", cwd=workdir).returncode == 0
    assert "multirun/day1/12-00/1,m1" in (workdir / "multirun" / "report" / "jobs.csv").read_text()


def test_curves_are_labelled_by_their_settings_while_those_are_short(workdir):
    from ftool.commands.report import curve_labels, read_job

    write_run(workdir / "0", "completed", overrides=["optimizer.lr=0.01", "model=mlp"])
    write_run(workdir / "1", "completed", overrides=["optimizer.lr=0.001", "data.root=" + "a_long_folder/" * 4])
    jobs = [read_job(workdir / job) for job in ("0", "1")]
    assert curve_labels(jobs, ["optimizer.lr"]) == {"0": "optimizer.lr=0.01", "1": "optimizer.lr=0.001"}
    assert curve_labels(jobs, ["data.root", "optimizer.lr"]) == {"0": "0", "1": "1"}  # the jobs table has them
    assert curve_labels(jobs, []) == {"0": "0", "1": "1"}


def test_report_errors_are_one_line(workdir):
    assert_one_line_error(ftool("report", str(workdir / "missing"), cwd=workdir), "is not a folder")
    assert_one_line_error(ftool("report", str(workdir), cwd=workdir), "holds no summary.json")
    assert_one_line_error(ftool("report", cwd=workdir), "report: give a run or multirun directory")
    write_run(workdir / "run", "completed")
    (workdir / "notes.txt").write_text("a file, not a folder")
    assert_one_line_error(ftool("report", "run", "out=notes.txt", cwd=workdir),
                          "out: cannot make the folder notes.txt (File exists)")


def test_a_line_cut_short_by_a_killed_run_is_left_out(workdir):
    from ftool.rundir import read_records

    metrics = workdir / "metrics.jsonl"
    metrics.write_text('{"step": 1, "epoch": 1, "split": "val", "val/loss": 0.5}\n{"step": 2, "epo')
    assert read_records(metrics) == [{"step": 1, "epoch": 1, "split": "val", "val/loss": 0.5}]


def test_short_curves_get_whole_epoch_ticks_and_no_epochs_they_lack(tmp_path):
    from ftool.commands.report import _finish, _pyplot

    for epochs, ticks in (([1], [0, 1, 2]), ([1, 2], [1, 2])):  # (one epoch is widened, two are not)
        fig, ax = _pyplot().subplots()
        ax.plot(epochs, [0.9] * len(epochs), marker="o")
        _finish(fig, ax, "short", "epoch", tmp_path / "short.png")
        assert (tmp_path / "short.png").stat().st_size > 0
        assert [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]] == ticks


def test_names_with_dollar_signs_are_drawn_as_written():
    from ftool.commands.report import _pyplot

    fig, ax = _pyplot().subplots()  # a class "$5-$10" was drawn as TeX, "5 − 10"
    ax.plot([1], label="$5-$10")
    texts = [ax.set_title("$5-$10"), *ax.legend().get_texts(), ax.set_xticks([0], ["$5-$10"])[0].label1]
    assert [(t.get_text(), t.get_parse_math()) for t in texts] == [("$5-$10", False)] * 3
    _pyplot().close(fig)


def _confusion_of(classes: list[str], path, capsys) -> tuple[str, list]:
    """confusion.png of these classes: (stderr, Python warnings)."""
    from ftool.commands.report import _confusion_png

    evaluated = {"per_class": {"classes": classes, "confusion_matrix": [[3, 1], [0, 4]]}, "split": "test",
                 "checkpoint": "best.safetensors"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _confusion_png(evaluated, path)
    assert is_png(path)
    return capsys.readouterr().err, caught


def test_letters_no_font_has_are_one_warning(tmp_path, capsys):
    # (Egyptian hieroglyphs: in neither DejaVu Sans nor a Chinese font) matplotlib warned once per letter
    err, caught = _confusion_of(["𓀀𓀁", "cat"], tmp_path / "c.png", capsys)
    assert caught == [] and err == (f"warning: {tmp_path / 'c.png'}: no font on this machine has the letters 𓀀𓀁, "
                                    f"drawn as boxes; install one that has them (Chinese, Japanese, Korean: Noto Sans "
                                    f"CJK, on Debian and Ubuntu the package fonts-noto-cjk)\n")


def test_chinese_class_names_are_drawn_with_a_chinese_font_where_there_is_one(tmp_path, capsys):
    from ftool.commands.report import _cjk_fonts

    if not _cjk_fonts():
        pytest.skip("no Chinese font on this machine (apt install fonts-wqy-zenhei)")
    err, caught = _confusion_of(["正面", "负面"], tmp_path / "c.png", capsys)  # (were boxes: matplotlib's font only)
    assert caught == [] and err == ""


def test_a_sweeps_failed_jobs_are_those_that_failed_in_this_sweep(tmp_path):
    import os
    import time

    from ftool.rundir import failed_jobs, sweep_jobs

    for job, status in (("10", "failed"), ("2", "failed"), ("1", "completed"), ("0", "failed")):
        (tmp_path / job).mkdir()
        (tmp_path / job / "summary.json").write_text(json.dumps({"status": status}))
    (tmp_path / "report").mkdir()  # not a job: no summary.json
    old = time.time() - 3600
    os.utime(tmp_path / "0" / "summary.json", (old, old))  # failed in an earlier sweep, not rerun in this one
    assert [j.path.name for j in sweep_jobs(tmp_path)] == ["0", "1", "2", "10"]
    assert [j.path.name for j in failed_jobs(tmp_path, since=time.time() - 60)] == ["2", "10"]
