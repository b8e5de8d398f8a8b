"""The training loop: exact resume, accumulation, the non-finite policy, early stopping, plateau,
precision and compilation, several processes, loggers."""

import os

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import ftool_process, one_line_error, read_json, read_jsonl

FAST = ("trainer.progress=false", "data.batch_size=64")


def weights(run) -> dict:
    return load_file(run / "checkpoints" / "last.safetensors")


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_epochs_resumed_in_a_new_process_to_four_equal_four_epochs_bit_for_bit(cli, tmp_path):
    assert cli("train", "trainer.epochs=4", "hydra.run.dir=whole", *FAST).code == 0
    assert cli("train", "trainer.epochs=2", "hydra.run.dir=half", *FAST).code == 0
    one_line_error(cli("train", "trainer.resume=half", "trainer.epochs=4", "data.split_seed=3"),
                   "trainer.resume keeps the run's data.split_seed=0")
    resumed = ftool_process("train", "trainer.resume=half", "trainer.epochs=4", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert same_weights(weights(tmp_path / "whole"), weights(tmp_path / "half"))
    whole, half = (read_json(tmp_path / name / "summary.json") for name in ("whole", "half"))
    assert half["metrics"] == whole["metrics"] and half["resumed_from_step"] == whole["timing"]["steps"] // 2


def test_the_tensor_loader_trains_bit_for_bit_as_the_dataloader(cli, tmp_path):
    for loader in ("tensor", "dataloader"):
        assert cli("train", "trainer.epochs=2", f"data.loader={loader}", f"hydra.run.dir={loader}", *FAST).code == 0
    assert same_weights(weights(tmp_path / "tensor"), weights(tmp_path / "dataloader"))


def test_a_resume_from_the_middle_of_an_epoch_is_bit_exact_and_keeps_its_batching(cli, tmp_path):
    assert cli("train", "trainer.epochs=2", "hydra.run.dir=whole", *FAST).code == 0
    assert cli("train", "trainer.max_steps=30", "hydra.run.dir=mid", *FAST).code == 0  # epoch 2, batch 7
    one_line_error(cli("train", "trainer.resume=mid", "trainer.max_steps=-1", "data.batch_size=32"),
                   "the checkpoint is from the middle of epoch 2", "data.batch_size=64")
    assert cli("train", "trainer.resume=mid", "trainer.epochs=2", "trainer.max_steps=-1").code == 0
    assert same_weights(weights(tmp_path / "whole"), weights(tmp_path / "mid"))


def test_accumulating_four_batches_of_16_equals_one_batch_of_64(cli, tmp_path):
    common = ("trainer.epochs=1", "trainer.progress=false", "optimizer=sgd", "trainer.validate=false")
    assert cli("train", *common, "data.batch_size=64", "hydra.run.dir=big").code == 0
    assert cli("train", *common, "data.batch_size=16", "trainer.accumulate_grad_batches=4", "hydra.run.dir=acc").code == 0
    a, b = weights(tmp_path / "big"), weights(tmp_path / "acc")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_a_non_finite_loss_stops_the_run_naming_the_step_or_skips_it(cli, tmp_path):
    result = cli("train", "optimizer.lr=1e12", "trainer.epochs=3", "hydra.run.dir=nan", *FAST)
    line = one_line_error(result, "training stopped: non-finite loss at step")
    assert read_json(tmp_path / "nan/summary.json")["error"] == line.removeprefix("ftool: error: ")
    result = cli("train", "optimizer.lr=1e12", "trainer.epochs=3", "trainer.on_nonfinite=skip", *FAST)
    assert "the model diverged" in result.err and "step skipped" in result.err


def test_early_stopping_and_plateau_act_on_the_monitored_metric(cli, tmp_path):
    result = cli("train", "trainer.epochs=30", "trainer.early_stopping_patience=1", "trainer.early_stopping_min_delta=0.5",
                 "hydra.run.dir=early", *FAST)
    summary = read_json(tmp_path / "early/summary.json")
    assert summary["stopped_early"] and summary["timing"]["epochs"] == 2 and "early stopping after epoch 2" in result.out
    result = cli("train", "trainer.epochs=6", "scheduler=plateau", "scheduler.patience=1", "trainer.monitor=val/loss",
                 "optimizer.lr=0.05", "hydra.run.dir=plateau", *FAST)
    lrs = [r["lr"] for r in read_jsonl(tmp_path / "plateau/metrics.jsonl") if "lr" in r]
    assert "the LR drops to" in result.out and min(lrs) < 0.05 * 0.2


def test_mixed_precision_channels_last_ema_and_clipping_complete(cli, tmp_path):
    result = cli("train", "trainer.epochs=1", "trainer.precision=fp16-mixed", "trainer.channels_last=true",
                 "trainer.ema_decay=0.9", "trainer.grad_clip=1.0", "model.padding=2", "hydra.run.dir=mixed", *FAST)
    assert result.code == 0, result.err
    assert read_json(tmp_path / "mixed/summary.json")["environment"]["precision"] == "fp16-mixed"


def test_a_compiled_model_trains(cli, tmp_path):
    result = cli("train", "model=linear", "data=regression", "trainer.compile=true", "trainer.max_steps=3",
                 "trainer.validate=false", "hydra.run.dir=compiled", *FAST)
    assert result.code == 0, result.err
    assert read_json(tmp_path / "compiled/summary.json")["environment"]["compile"] is True


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one_and_write_one_run_dir(cli, tmp_path, strategy):
    common = ("trainer.epochs=2", "trainer.progress=false", "data.batch_size=64", "optimizer=sgd",
              "trainer.metrics=[accuracy,auroc]")  # (AUROC's outputs are gathered from both processes)
    assert cli("train", *common, "hydra.run.dir=one").code == 0
    # DDP as a sweep of one job (every process runs the sweep), FSDP as a run
    where = ("-m", "optimizer.lr=0.01", "hydra.sweep.dir=sweep") if strategy == "ddp" else ("hydra.run.dir=two",)
    two = ftool_process("train", *common, "trainer.devices=2", f"trainer.strategy={strategy}", *where, cwd=tmp_path)
    assert two.returncode == 0, two.stderr
    two_run = tmp_path / ("sweep/0" if strategy == "ddp" else "two")
    one, two = (read_json(path / "summary.json") for path in (tmp_path / "one", two_run))
    assert two["environment"]["world_size"] == 2
    assert {p.name for p in tmp_path.iterdir()} == {"one", two_run.relative_to(tmp_path).parts[0]}  # (one dir a run)
    assert two["metrics"]["test/accuracy"] == pytest.approx(one["metrics"]["test/accuracy"], abs=0.02)
    assert two["metrics"]["test/auroc"] == pytest.approx(one["metrics"]["test/auroc"], abs=0.005)
    a, b = weights(tmp_path / "one"), weights(two_run)
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)


def test_tensorboard_csv_and_mlflow_loggers_write_their_files(cli, tmp_path):
    result = cli("train", "trainer.epochs=2", "logger=[tensorboard,csv,mlflow]",
                 f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db", "hydra.run.dir=logged", *FAST)
    assert result.code == 0, result.err
    assert list((tmp_path / "logged" / "tensorboard").glob("events.out.tfevents.*"))
    rows = (tmp_path / "logged" / "metrics.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,split,metric,value" and any(",test,test/accuracy," in r for r in rows)
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    found = mlflow.search_runs(experiment_names=["ftool"])
    assert found["status"].tolist() == ["FINISHED"] and "metrics.test_accuracy" in found


def test_deterministic_mode_sets_the_cublas_workspace_cuda_needs(monkeypatch):
    from ftool.engine.seeding import seed_everything

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        seed_everything(0, True)
        assert torch.are_deterministic_algorithms_enabled() and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        seed_everything(0, False)


def test_a_terminal_shows_one_live_bar_and_each_finished_epoch_as_a_line(monkeypatch):
    from ftool.engine import progress

    monkeypatch.setattr(progress.console, "_force_terminal", True)
    bar = progress.Bar(True)
    try:
        for epoch in range(1, 31):  # more epochs than a terminal has rows
            bar.start(f"epoch {epoch}/30", 10)
            bar.advance(10, "loss 0.1")
            assert len(bar.live.tasks) == 1
            bar.done(f"epoch {epoch}/30  train/loss 0.1")
        assert bar.live.tasks == []
    finally:
        bar.close()
