"""Sweeps through the real CLI: an Optuna search, parallel local jobs, the SLURM launcher's config,
and a re-run sweep that skips finished jobs and resumes the others."""

import csv
import json
import shutil

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import get_class

from ftool.cli import config_root
from tests.conftest import assert_one_line_error, ftool, read_json

FAST = ("trainer.epochs=2", "trainer.progress=false")


def jobs(sweep):
    return sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def test_optuna_search_runs_its_trials_and_returns_the_monitored_metric(workdir):
    sweep = workdir / "optuna"
    result = ftool("train", "-m", "hparams_search=digits_optuna", "hydra.sweeper.n_trials=3", *FAST,
                   f"hydra.sweep.dir={sweep}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "alembic" not in result.stdout + result.stderr  # Optuna's import of it logs at INFO
    trials = jobs(sweep)
    assert len(trials) == 3 and all(read_json(t / "summary.json")["status"] == "completed" for t in trials)
    best = max(read_json(t / "summary.json")["best"]["value"] for t in trials)
    found = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert found["best_value"] == best  # Optuna optimized what each trial returned
    assert set(found["best_params"]) == {"optimizer.lr", "optimizer.weight_decay", "data.batch_size"}

    assert ftool("report", str(sweep), cwd=workdir).returncode == 0
    rows = list(csv.reader((sweep / "report" / "jobs.csv").open()))
    assert float(rows[1][rows[0].index("val/accuracy")]) == round(best, 4)


def test_a_search_without_multirun_is_refused_not_one_run(workdir):
    assert_one_line_error(ftool("train", "hparams_search=digits_optuna", *FAST, cwd=workdir),
                          "hparams_search=digits_optuna: a search runs its trials as a sweep: ftool train -m "
                          "hparams_search=digits_optuna ...; without -m it would be one run of the config's values")
    assert not (workdir / "outputs").exists()


def test_a_glob_sweeps_the_options_it_matches(workdir):
    sweep = workdir / "glob"
    result = ftool("train", "-m", "optimizer=glob(*,exclude=adam)", "trainer.max_steps=2", "trainer.validate=false",
                   "trainer.progress=false", f"hydra.sweep.dir={sweep}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    chosen = [yaml.safe_load((j / ".hydra" / "config.yaml").read_text())["optimizer"]["name"] for j in jobs(sweep)]
    assert chosen == ["adamw", "sgd"]


def test_a_sweep_over_data_files_named_in_any_script(workdir):
    # data.path, which data=table leaves to the user (???), was refused as missing when swept; a non-ASCII
    # name in a sweep was Hydra's LexerNoViableAltException
    rows = "a,b,y\n" + "".join(f"{i % 7},{i % 3},{'x' if i % 2 else 'z'}\n" for i in range(60))
    for name in ("one.csv", "二.csv"):
        (workdir / name).write_text(rows)
    sweep = workdir / "tables"
    result = ftool("train", "-m", "data=table", "model=mlp", "data.path=one.csv,二.csv", "trainer.max_steps=2",
                   "trainer.progress=false", f"hydra.sweep.dir={sweep}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert [read_json(j / "summary.json")["status"] for j in jobs(sweep)] == ["completed"] * 2
    assert [yaml.safe_load((j / ".hydra" / "config.yaml").read_text())["data"]["path"] for j in jobs(sweep)] == [
        "one.csv", "二.csv"]
    assert ftool("report", str(sweep), cwd=workdir).returncode == 0
    table = list(csv.reader((sweep / "report" / "jobs.csv").open()))  # as written: not '二.csv', nor False
    assert [r[1] for r in table] == ["data.path", "one.csv", "二.csv"] and "trainer.progress" not in table[0]


def test_a_sweep_dir_with_an_unreadable_job_record_still_ends_as_its_jobs_did(workdir):
    sweep = workdir / "sweep"
    (sweep / "7").mkdir(parents=True)
    (sweep / "7" / "summary.json").write_text("{")  # a record cut short (a job killed while writing it)
    result = ftool("train", "-m", "optimizer.lr=0.01", "trainer.max_steps=2", "trainer.validate=false",
                   "trainer.progress=false", f"hydra.sweep.dir={sweep}", cwd=workdir)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr


def test_parallel_local_jobs_through_joblib_and_a_failed_one_fails_the_sweep(workdir):
    sweep = workdir / "parallel"
    result = ftool("train", "-m", "hydra/launcher=local_parallel", "optimizer.lr=0.01,0.001,-1", *FAST,
                   f"hydra.sweep.dir={sweep}", cwd=workdir)
    launcher = yaml.safe_load((sweep / "multirun.yaml").read_text())["hydra"]["launcher"]
    assert launcher["_target_"].endswith("JoblibLauncher") and launcher["n_jobs"] == 2
    assert [read_json(j / "summary.json")["status"] for j in jobs(sweep)] == ["completed", "completed", "failed"]
    # The failed job ran in a joblib worker process; the sweep still reports it and exits with 1.
    assert result.returncode == 1
    assert "optimizer.lr: must be > 0" in result.stderr and f"1 job(s) failed: {sweep / '2'}" in result.stderr


def test_the_slurm_launcher_config_composes_and_its_plugin_loads():
    with initialize_config_dir(str(config_root()), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher.partition == "gpu" and launcher.tasks_per_node == 1 and launcher.timeout_min == 240
    cls = get_class(launcher._target_)
    assert cls.__name__ == "SlurmLauncher"


@pytest.mark.skipif(shutil.which("srun") is not None, reason="this machine has SLURM")
def test_the_slurm_launcher_off_a_cluster_is_one_line_not_a_traceback(workdir):
    assert_one_line_error(ftool("train", "-m", "hydra/launcher=slurm", "optimizer.lr=0.01,0.001", *FAST, cwd=workdir),
                          "hydra/launcher=slurm: this machine has no SLURM (srun not found)")


def test_a_rerun_sweep_skips_finished_jobs_and_resumes_the_others(workdir):
    sweep = workdir / "sweep"
    command = ("train", "-m", "optimizer.lr=0.01,0.001", *FAST, f"hydra.sweep.dir={sweep}", "trainer.resume=auto")
    assert ftool(*command, cwd=workdir).returncode == 0
    first, second = jobs(sweep)
    # each job's timing counts from its own start (the second's counted the first job's time too, and
    # the first's total did not count ftool's start-up, which its first step did)
    for job in (first, second):
        timing = read_json(job / "summary.json")["timing"]
        assert 0 < timing["first_step_seconds"] <= timing["total_seconds"], timing
    kept = (first / "summary.json").read_bytes()
    record = read_json(second / "summary.json")
    (second / "summary.json").write_text(json.dumps({**record, "status": "interrupted"}))  # as if preempted

    result = ftool(*command, cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert f"{first} completed before; skipped" in result.stdout
    assert (first / "summary.json").read_bytes() == kept
    again = read_json(second / "summary.json")
    assert again["status"] == "completed" and again["resumed_from_step"] == record["timing"]["steps"]
    assert again["metrics"]["test/accuracy"] == record["metrics"]["test/accuracy"]

    # A value added to the list shifts the jobs: job 1 is now lr 0.003, its folder holds lr 0.001's run,
    # which was skipped and reported as 0.003's. The sweep stops there, the runs as they were.
    shifted = ftool("train", "-m", "optimizer.lr=0.01,0.003,0.001", *FAST, f"hydra.sweep.dir={sweep}",
                    "trainer.resume=auto", cwd=workdir)
    assert shifted.returncode == 2 and "Traceback" not in shifted.stderr
    assert (f"ftool: error: trainer.resume=auto: {second} holds a run of optimizer.lr=0.001, and this sweep's job 1 "
            f"is optimizer.lr=0.003; a sweep continues its jobs by number: run it again with the values it had "
            f"(more trainer.epochs continue them), or give another hydra.sweep.dir") in shifted.stderr
    assert jobs(sweep) == [first, second] and read_json(second / "summary.json") == again
    # More epochs, swept too, continue the jobs.
    sweep = workdir / "epochs"
    for epochs in ("1,2", "2,3"):
        longer = ftool("train", "-m", f"trainer.epochs={epochs}", "trainer.progress=false", f"hydra.sweep.dir={sweep}",
                       "trainer.resume=auto", cwd=workdir)
        assert longer.returncode == 0, longer.stderr
    assert [read_json(job / "summary.json")["resumed_from_step"] > 0 for job in jobs(sweep)] == [True, True]
    assert [read_json(job / "summary.json")["timing"]["epochs"] for job in jobs(sweep)] == [2, 3]
