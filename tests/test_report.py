"""`ftool report` on a real sweep, on runs that failed, over seeds, and comparing folders."""

import csv
import json

from tests.conftest import one_line_error

PNG = b"\x89PNG\r\n\x1a\n"


def is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG


def test_report_of_a_grid_ranks_the_jobs_and_draws_them_and_of_a_run_its_curves(cli, tmp_path):
    result = cli("train", "-m", "model=simplecnn,mlp", "optimizer.lr=0.01,0.001", "trainer.max_steps=10",
                 "trainer.progress=false", "hydra.sweep.dir=sweep")
    assert result.code == 0, result.err
    values = {p.name: json.loads((p / "summary.json").read_text())["best"]["value"]
              for p in (tmp_path / "sweep").iterdir() if p.name.isdigit()}
    assert f"sweep: 4 jobs in sweep; best val/accuracy {max(values.values()):.4f}" in result.out
    assert cli("report", "sweep").code == 0
    rows = list(csv.reader((tmp_path / "sweep/report/jobs.csv").open()))
    assert rows[0][:5] == ["job", "model", "optimizer.lr", "status", "val/accuracy"] and "test/accuracy" in rows[0]
    assert [r[0] for r in rows[1:]] == sorted(values, key=values.get, reverse=True)  # best first
    for png in ("curves.png", "model.png", "optimizer_lr.png"):
        assert is_png(tmp_path / "sweep/report" / png), png
    import matplotlib

    assert matplotlib.rcParams["text.parse_math"]  # the LR plot's log-scale ticks read 10^-3, not $\mathdefault...
    assert cli("eval", "ckpt=sweep/0").code == 0
    result = cli("report", "sweep/0")
    assert result.code == 0 and "test/accuracy" in result.out
    for png in ("loss.png", "val_accuracy.png", "lr.png", "confusion.png"):  # (one epoch's curves too)
        assert is_png(tmp_path / "sweep/0/report" / png), png


def write_run(path, status, value=None, seed=0, lr="0.01", error=None):
    (path / ".hydra").mkdir(parents=True)
    best = {"monitor": "val/loss", "mode": "min", "epoch": 2, "value": value} if value is not None else None
    summary = {"command": "train", "status": status, "best": best, "error": error, "metrics": {"test/loss": value}}
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "metrics.jsonl").write_text("".join(json.dumps({"step": e, "epoch": e, "split": "val", "val/loss": 1 / e})
                                                + "\n" for e in (1, 2)))
    (path / ".hydra" / "overrides.yaml").write_text(f"- trainer.seed={seed}\n- optimizer.lr={lr}\n")


def test_a_sweep_over_seeds_gives_each_settings_mean_and_spread_and_failed_jobs_last(cli, tmp_path):
    for job, (lr, seed, value) in enumerate([("0.1", 0, 0.5), ("0.1", 1, 0.7), ("0.01", 0, 0.2), ("0.01", 1, 0.4)]):
        write_run(tmp_path / "seeds" / str(job), "completed", value, seed, lr)
    write_run(tmp_path / "seeds" / "4", "failed", seed=2, lr="0.3", error="training: ValueError: bad")
    result = cli("report", "seeds")
    assert result.code == 0, result.err
    rows = list(csv.reader((tmp_path / "seeds/report/seeds.csv").open()))
    assert rows[0][:4] == ["optimizer.lr", "seeds", "val/loss mean", "val/loss std"]
    assert rows[1][:3] == ["0.01", "2", "0.3000"] and float(rows[1][3]) > 0
    jobs = list(csv.reader((tmp_path / "seeds/report/jobs.csv").open()))
    assert [r[0] for r in jobs[1:]] == ["2", "3", "0", "1", "4"] and jobs[-1][3] == "failed"


def test_report_compares_runs_from_several_folders_and_names_what_it_cannot_read(cli, tmp_path):
    write_run(tmp_path / "a", "completed", 0.5)
    write_run(tmp_path / "b", "completed", 0.3, lr="0.1")
    result = cli("report", "a", "b", "out=compared")
    assert result.code == 0 and is_png(tmp_path / "compared" / "curves.png")
    assert [r[0] for r in csv.reader((tmp_path / "compared/jobs.csv").open())][1:] == ["b", "a"]
    one_line_error(cli("report", "nowhere"), "report: nowhere holds no summary.json")
