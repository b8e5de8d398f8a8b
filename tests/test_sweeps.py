"""Sweeps through Hydra's sweepers and launchers: an Optuna search, parallel local jobs, a re-run sweep."""

import json

import yaml

from tests.conftest import one_line_error, read_json

def jobs(sweep):
    return sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def test_an_optuna_search_optimizes_what_each_trial_returns_and_continues_from_its_storage(cli, tmp_path):
    search = ("train", "-m", "hparams_search=digits_optuna", "trainer.max_steps=20", "hydra.sweeper.storage=sqlite:///s.db")
    result = cli(*search, "hydra.sweeper.n_trials=2", "hydra.sweep.dir=optuna")
    assert result.code == 0, result.err
    trials = jobs(tmp_path / "optuna")
    assert len(trials) == 2 and all(read_json(t / "summary.json")["status"] == "completed" for t in trials)
    found = yaml.safe_load((tmp_path / "optuna" / "optimization_results.yaml").read_text())
    assert found["best_value"] == max(read_json(t / "summary.json")["best"]["value"] for t in trials)
    assert cli(*search, "hydra.sweeper.n_trials=1", "hydra.sweeper.sampler.seed=1", "hydra.sweep.dir=more").code == 0
    import optuna

    study = optuna.load_study(study_name="digits_optuna", storage=f"sqlite:///{tmp_path / 's.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    one_line_error(cli("train", "hparams_search=digits_optuna"), "a search runs its trials as a sweep")


def test_parallel_local_jobs_and_a_rerun_sweep_that_resumes_only_what_is_left(cli, tmp_path):
    args = ("train", "-m", "optimizer.lr=0.01,0.001", "trainer.progress=false", "hydra/launcher=local_parallel",
            "hydra.sweep.dir=sweep", "trainer.resume=auto")
    result = cli(*args, "trainer.epochs=1")
    assert result.code == 0, result.err
    assert [read_json(j / "summary.json")["timing"]["epochs"] for j in jobs(tmp_path / "sweep")] == [1, 1]
    assert cli(*args, "trainer.epochs=2").code == 0
    resumed = [read_json(j / "summary.json") for j in jobs(tmp_path / "sweep")]
    assert [(s["timing"]["epochs"], s["resumed_from_step"]) for s in resumed] == [(2, 41), (2, 41)]
    assert cli(*args[:4], *args[5:], "trainer.epochs=2").code == 0  # nothing left: each job skipped, its record kept
    assert [read_json(j / "summary.json") for j in jobs(tmp_path / "sweep")] == resumed
    records = [json.loads(line) for line in (tmp_path / "sweep/0/metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["split"] == "val"] == [1, 2]
