"""The engine through the real CLI: exact resume, kill and resume, gradient accumulation,
precision and compilation, two-process DDP, early stopping, the NaN guard, loggers."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from ftool.engine.accelerator import cpu_has_bf16
from ftool.errors import FtoolError
from tests.conftest import assert_one_line_error, ftool, model_of_your_own, read_json, read_jsonl

# A small, fast job: the MLP on random 1x8x8 data, 540 training samples (5 batches of 128).
SMALL = ("trainer.progress=false", "data=synthetic", "data.shape=[1,8,8]", "data.train_size=600", "model=mlp")


def train(workdir, run, *overrides):
    result = ftool("train", *SMALL, *overrides, f"hydra.run.dir={run}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    return result


def weights(run, name="last"):
    return load_file(run / "checkpoints" / f"{name}.safetensors")


def assert_same_weights(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for k in a:
        if atol:
            torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0)
        else:
            assert torch.equal(a[k], b[k]), k


def test_two_epochs_resumed_to_four_equal_four_epochs_bit_for_bit(workdir):
    full, half = workdir / "full", workdir / "half"
    train(workdir, full, "trainer.epochs=4")
    train(workdir, half, "trainer.epochs=2")
    result = ftool("train", f"trainer.resume={half}", "trainer.epochs=4", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "resuming at step 10 (epoch 3)" in result.stdout

    for name in ("last", "best"):
        assert_same_weights(weights(full, name), weights(half, name))
    a, b = read_json(full / "summary.json"), read_json(half / "summary.json")
    assert b["status"] == "completed" and b["resumed_from_step"] == 10
    assert a["metrics"] == b["metrics"] and a["best"] == b["best"]
    # The first attempt's final test record is replaced, the log reads as one run.
    def log(run):  # every record but the measured speed
        return [{k: v for k, v in r.items() if k != "train/samples_per_s"} for r in read_jsonl(run / "metrics.jsonl")]

    assert log(full) == log(half)
    assert not list(workdir.glob("outputs"))  # the resumed run reused its run dir


def test_resume_auto_skips_a_completed_run_unless_it_asks_for_more_epochs(workdir):
    full, run = workdir / "full", workdir / "run"
    train(workdir, full, "trainer.epochs=3")
    train(workdir, run, "trainer.resume=auto", "trainer.epochs=2")
    kept = (run / "summary.json").read_bytes()
    assert "completed before; skipped" in train(workdir, run, "trainer.resume=auto", "trainer.epochs=2").stdout
    assert (run / "summary.json").read_bytes() == kept
    # Resumed by its path, as far as it went: skipped too, not re-tested with its timing zeroed.
    skipped = ftool("train", f"trainer.resume={run}", "trainer.epochs=2", cwd=workdir)
    assert "completed before; skipped" in skipped.stdout and (run / "summary.json").read_bytes() == kept
    # In two processes (the second, which reads no summary, ended in a traceback).
    skipped = ftool("train", f"trainer.resume={run}", "trainer.epochs=2", "trainer.devices=2", cwd=workdir)
    assert skipped.returncode == 0 and "Traceback" not in skipped.stderr, skipped.stderr
    assert "completed before; skipped" in skipped.stdout and (run / "summary.json").read_bytes() == kept

    result = train(workdir, run, "trainer.resume=auto", "trainer.epochs=3")
    assert "resuming at step 10 (epoch 3)" in result.stdout
    assert_same_weights(weights(full), weights(run))
    assert read_json(run / "summary.json")["timing"]["epochs"] == 3


def test_resume_auto_in_a_timestamped_folder_warns_that_it_never_resumes(workdir):
    result = ftool("train", *SMALL, "trainer.epochs=1", "trainer.resume=auto", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert ("warning: trainer.resume=auto: hydra.run.dir is a new timestamped folder for every run, so there is "
            "never one to continue; name one (hydra.run.dir=runs/long)") in result.stderr


def test_resume_from_the_middle_of_an_epoch_is_bit_exact(workdir):
    full, cut = workdir / "full", workdir / "cut"
    common = ("trainer.epochs=3", "trainer.validate=false")
    train(workdir, full, *common)
    train(workdir, cut, *common, "trainer.max_steps=7")  # stops in epoch 2, after batch 2 of 5
    state = torch.load(cut / "checkpoints" / "last.state.pt", weights_only=True)
    assert state["position"]["epoch"] == 2 and state["position"]["batch"] == 2
    # Its 2 batches done are 2 of 128: in batches of 64, the count would repeat samples.
    assert_one_line_error(ftool("train", f"trainer.resume={cut}", "trainer.max_steps=-1", "data.batch_size=64", cwd=workdir),
                          "trainer.resume: the checkpoint is from the middle of epoch 2, taken with data.batch_size=128 "
                          "(now 64); finish that epoch with those settings (trainer.epochs=2)")
    result = ftool("train", f"trainer.resume={cut}/checkpoints/last.state.pt", "trainer.max_steps=-1", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert_same_weights(weights(full), weights(cut))
    assert read_json(full / "summary.json")["metrics"] == read_json(cut / "summary.json")["metrics"]


def lrs(run, after=0):
    """{step: LR} the run logged after step `after`."""
    return {r["step"]: r["lr"] for r in read_jsonl(run / "metrics.jsonl") if "lr" in r and r["step"] > after}


def test_a_resume_trains_with_the_commands_settings_and_the_checkpoints_state(workdir):
    # More epochs on a finished onecycle run: its schedule is laid over the new length (the saved
    # scheduler state's own length made the step after it a torch traceback).
    cycle = ("scheduler=onecycle", "trainer.log_every_n_steps=1")
    full, extended = workdir / "full", workdir / "extended"
    train(workdir, full, *cycle, "trainer.epochs=4")
    train(workdir, extended, *cycle, "trainer.epochs=2")
    result = ftool("train", f"trainer.resume={extended}", "trainer.epochs=4", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert lrs(extended, after=10) == lrs(full, after=10) and len(lrs(full, after=10)) == 10
    assert (f"resume: step 11 trains at learning rate {lrs(full)[10]:.3g}, where the checkpoint's run had "
            f"{lrs(extended)[10]:.3g}: this command's optimizer and scheduler settings apply, over its 20 steps"
            in result.stdout)

    # A new optimizer.lr applies (the optimizer's saved state used to bring back the old one).
    run = workdir / "run"
    train(workdir, run, "trainer.epochs=1", "trainer.log_every_n_steps=1")
    assert set(lrs(run).values()) == {0.001}
    assert ftool("train", f"trainer.resume={run}", "trainer.epochs=2", "optimizer.lr=0.01", cwd=workdir).returncode == 0
    assert set(lrs(run, after=5).values()) == {0.01}
    # fp16 from here on: a run without fp16 saved no loss scale (loading its empty one was a traceback).
    result = ftool("train", f"trainer.resume={run}", "trainer.epochs=3", "trainer.precision=fp16-mixed", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert read_json(run / "summary.json")["environment"]["precision"] == "fp16-mixed"


def test_a_run_resumed_at_its_last_step_trains_no_further(workdir):
    # max_steps ended it mid-epoch, and its test did not finish (a crash, Ctrl-C): nothing is left to train.
    run, job = workdir / "run", ("trainer.epochs=3", "trainer.max_steps=7", "scheduler=onecycle")
    train(workdir, run, *job)
    trained = weights(run)
    summary = read_json(run / "summary.json")
    (run / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    assert_one_line_error(ftool("train", f"trainer.resume={run}", "trainer.max_steps=5", cwd=workdir),
                          "trainer.resume: the checkpoint is at step 7, past the 5 steps this run asks for; "
                          "more trainer.epochs (or trainer.max_steps) continue it")
    train(workdir, run, *job, "trainer.resume=auto")  # the same command again
    assert_same_weights(weights(run), trained)
    finished = read_json(run / "summary.json")
    assert finished["status"] == "completed" and finished["timing"]["steps"] == 7
    assert finished["metrics"]["test/loss"] == summary["metrics"]["test/loss"]


def test_a_resume_in_larger_batches_trains_the_epochs_asked(workdir):
    # 2 epochs of 9 steps (batches of 64), then 2 more of 5 (128): the plan counted 4 x 5 = 20 steps in
    # all, so the run stopped 2 steps into epoch 3.
    run = workdir / "run"
    train(workdir, run, "trainer.epochs=2", "data.batch_size=64")
    train(workdir, run, "trainer.resume=auto", "trainer.epochs=4")
    timing = read_json(run / "summary.json")["timing"]
    assert (timing["epochs"], timing["steps"]) == (4, 18 + 2 * 5)
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl") if r["split"] == "val"] == [9, 18, 23, 28]


def test_a_mid_epoch_resume_checks_each_setting_its_batch_count_depends_on():
    from ftool.engine.trainer import Position, _check_same_batching

    taken = {"data.batch_size": 32, "trainer.devices": 1, "trainer.accumulate_grad_batches": 1}
    now = {**taken, "data.group_by_length": True}
    _check_same_batching(Position(epoch=2, batch=5, layout=taken), now)  # a checkpoint older than the key
    with pytest.raises(FtoolError, match=r"taken with data.group_by_length=False \(now True\)"):
        # length grouping reorders the epoch: the batches done would be other samples
        _check_same_batching(Position(epoch=2, batch=5, layout={**taken, "data.group_by_length": False}), now)


def test_sigkill_leaves_a_checkpoint_that_resume_auto_finishes(workdir):
    job = (*SMALL, "model=simplecnn", "data.shape=[3,32,32]", "data.train_size=1500", "data.batch_size=32",
           "trainer.epochs=3", "trainer.validate=false", "trainer.checkpoint_every_n_steps=5")
    full, killed = workdir / "full", workdir / "killed"
    assert ftool("train", *job, f"hydra.run.dir={full}", cwd=workdir).returncode == 0

    proc = subprocess.Popen([sys.executable, "-m", "ftool", "train", *job, f"hydra.run.dir={killed}"],
                            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = killed / "checkpoints" / "last.state.pt"
    deadline = time.time() + 120
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert read_json(killed / "summary.json")["status"] == "running"  # no chance to say otherwise

    result = ftool("train", *job, f"hydra.run.dir={killed}", "trainer.resume=auto", cwd=workdir)
    assert result.returncode == 0, result.stderr
    summary = read_json(killed / "summary.json")
    assert summary["status"] == "completed" and summary["resumed_from_step"] >= 5
    assert_same_weights(weights(full), weights(killed))


def test_a_run_in_training_is_refused_to_a_second_process_and_reported_killed_when_its_process_was(workdir):
    run = workdir / "live"
    proc = subprocess.Popen([sys.executable, "-m", "ftool", "train", *SMALL, "trainer.epochs=100000",
                             "trainer.checkpoint_every_n_steps=5", f"hydra.run.dir={run}"],
                            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (run / "checkpoints" / "last.state.pt").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        config = (run / ".hydra" / "config.yaml").read_bytes()
        # a resume started twice, resume=auto beside the live run: both would write its checkpoints
        for args in ([f"trainer.resume={run}"], [*SMALL, f"hydra.run.dir={run}", "trainer.resume=auto"]):
            assert_one_line_error(ftool("train", *args, cwd=workdir), f"{run}: process {proc.pid} on ",
                                  " is training this run; wait for it to end, or stop it, before training it again")
        assert (run / ".hydra" / "config.yaml").read_bytes() == config and not (run / ".hydra-resume").exists()
        assert f"{run}: running, as of epoch " in ftool("report", str(run), cwd=workdir).stdout  # (its figures so far)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert read_json(run / "summary.json")["status"] == "running"  # (no chance to say otherwise)
    assert f"{run}: killed, as of epoch " in ftool("report", str(run), cwd=workdir).stdout  # no process trains it


def test_resume_errors_are_one_line(workdir):
    assert_one_line_error(ftool("train", f"trainer.resume={workdir}/nowhere", cwd=workdir),
                          "trainer.resume:", "does not exist")
    run = workdir / "run"
    train(workdir, run, "trainer.epochs=1")
    trained = read_json(run / "summary.json")
    # Other classes would train each label against another class's output. The failed attempt is
    # recorded, and the run's results stand: eval and predict read its data's description there.
    assert_one_line_error(ftool("train", f"trainer.resume={run}", "trainer.epochs=2", "data.num_classes=3", cwd=workdir),
                          "data: its classes (0, 1, 2) are not those the run was trained on (0, 1, 2, 3, 4, 5, 6, 7, "
                          "... 10 in all); a resumed run needs data with the run's classes")
    failed = read_json(run / "summary.json")
    assert failed["status"] == "failed" and failed["error"].startswith("data: its classes")
    assert {k: failed[k] for k in ("data", "metrics", "best")} == {k: trained[k] for k in ("data", "metrics", "best")}
    # Another seed reshuffled the data order, so a mid-epoch resume skipped or repeated samples.
    assert_one_line_error(ftool("train", f"trainer.resume={run}", "trainer.epochs=2", "trainer.seed=5", cwd=workdir),
                          "trainer.seed=5: a resume continues the run's random state and data order (trainer.seed=0); "
                          "a new run (another hydra.run.dir) takes another seed")
    # Another metric's values were compared with the best so far (val/loss 0.3 "beat" val/accuracy 0.9).
    assert_one_line_error(ftool("train", f"trainer.resume={run}", "trainer.epochs=2", "trainer.monitor=val/loss",
                                cwd=workdir), "trainer.monitor: a resume keeps the metric its best checkpoint was "
                          "chosen by (val/accuracy, mode max); a new run (another hydra.run.dir) may choose another")
    # A sweep of resumes: each job looked for a checkpoint in its own new folder.
    assert_one_line_error(ftool("train", "-m", f"trainer.resume={run}", "optimizer.lr=0.1,0.01", cwd=workdir),
                          f"trainer.resume={run}: a sweep's jobs are new runs and a resume continues one; to start "
                          f"each job from its weights, ftool finetune -m finetune.from={run} ...")
    # The LR multipliers group the optimizer's parameters: torch's "different number of parameter groups".
    tuned = workdir / "tuned"
    assert ftool("finetune", *SMALL, f"finetune.from={run}", "trainer.epochs=1", f"hydra.run.dir={tuned}",
                 cwd=workdir).returncode == 0
    assert_one_line_error(ftool("finetune", f"trainer.resume={tuned}", "trainer.epochs=2", "finetune.backbone_lr_mult=0.1",
                                cwd=workdir), "finetune.backbone_lr_mult=0.1: the run's optimizer groups its parameters "
                          "by it (finetune.backbone_lr_mult=1.0), and its checkpoint holds their state so")
    # Another folder was ignored: the resume went on in the run's own.
    assert_one_line_error(ftool("train", f"trainer.resume={run}", "trainer.epochs=2", "hydra.run.dir=fork", cwd=workdir),
                          f"hydra.run.dir: a resume continues the run in its own folder ({run}); to train on from its "
                          f"weights in another, ftool finetune finetune.from={run} hydra.run.dir=fork")
    # A logger is added as a key of the saved config's `logger` (the hint said logger.<key>=..., which fails).
    assert_one_line_error(ftool("train", f"trainer.resume={run}", "trainer.epochs=2", "logger=tensorboard", cwd=workdir),
                          "set its keys instead (+logger.tensorboard={})")
    assert ftool("train", f"trainer.resume={run}", "trainer.epochs=2", "+logger.tensorboard={}", cwd=workdir).returncode == 0
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    (run / "checkpoints" / "last.state.pt").unlink()
    assert_one_line_error(ftool("train", f"trainer.resume={run}", "trainer.epochs=3", cwd=workdir), "no resumable checkpoint")


def test_a_refused_resume_keeps_the_runs_config_and_one_that_trains_records_its_own(workdir):
    run = workdir / "run"
    train(workdir, run, "trainer.epochs=1")
    config, saved = run / ".hydra" / "config.yaml", (run / ".hydra" / "config.yaml").read_bytes()
    where_it_ran = (run / ".hydra" / "hydra.yaml").read_bytes()
    # Refused (another model), by `auto` and by path: Hydra's copy of the new config used to replace
    # the run's, so eval and predict then refused the run's own checkpoint.
    for resume in (*SMALL, "trainer.resume=auto", f"hydra.run.dir={run}"), (f"trainer.resume={run}",):
        assert_one_line_error(ftool("train", *resume, "trainer.epochs=2", "model.hidden=[32]", cwd=workdir),
                              "does not fit this model")
        assert config.read_bytes() == saved and not (run / ".hydra-resume").exists()
    assert ftool("eval", f"ckpt={run}", cwd=workdir).returncode == 0

    # Taken, by path: the run's config and overrides gain the resume's settings.
    assert ftool("train", f"trainer.resume={run}", "trainer.epochs=2", "optimizer.lr=0.01", cwd=workdir).returncode == 0
    recorded = yaml.safe_load(config.read_text())
    assert recorded["trainer"]["epochs"] == 2 and recorded["optimizer"]["lr"] == 0.01
    overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    assert overrides == [*SMALL, "trainer.epochs=2", "optimizer.lr=0.01"]  # (trainer.resume=<path> aside)
    assert (run / ".hydra" / "hydra.yaml").read_bytes() == where_it_ran  # the folder it ran in, for its paths
    # By `auto`: composed afresh, recorded as Hydra records a run.
    train(workdir, run, "trainer.resume=auto", "trainer.epochs=3")
    assert yaml.safe_load(config.read_text())["optimizer"]["lr"] == 0.001
    assert yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text()) == [
        *SMALL, "trainer.resume=auto", "trainer.epochs=3"]
    assert sorted(p.name for p in run.iterdir()) == [".hydra", ".lock", "checkpoints", "eval.json", "metrics.jsonl",
                                                    "summary.json"]  # (no pending config left)


def test_accumulating_four_batches_of_16_equals_one_batch_of_64(workdir):
    # 540 samples: the last group is short (28 samples in batches of 16 and 12), where a plain
    # division by the number of batches would weight the samples wrongly.
    common = ("trainer.epochs=2", "trainer.validate=false")
    big, accumulated = workdir / "big", workdir / "accumulated"
    train(workdir, big, *common, "data.batch_size=64")
    train(workdir, accumulated, *common, "data.batch_size=16", "trainer.accumulate_grad_batches=4")
    assert read_json(big / "summary.json")["timing"]["steps"] == read_json(accumulated / "summary.json")["timing"]["steps"] == 18
    assert_same_weights(weights(big), weights(accumulated), atol=1e-6)


def test_balanced_class_weights_find_more_of_a_rare_class_and_eval_scores_the_same_loss(workdir):
    """One transaction in 20 is fraud: weighting the classes by their rarity trades precision for recall."""
    rng = np.random.default_rng(0)
    fraud = rng.random(2000) < 0.05
    amount, hour = rng.normal(np.where(fraud, 250, 100), 80), rng.normal(np.where(fraud, 4, 12), 5)
    rows = "\n".join(f"{a:.1f},{h:.1f},{int(f)}" for a, h, f in zip(amount, hour, fraud))
    (workdir / "payments.csv").write_text("amount,hour,fraud\n" + rows + "\n")
    common = ("model=linear", "data=table", "data.path=payments.csv", "optimizer.lr=0.05", "trainer.epochs=10",
              "trainer.progress=false")
    for weights in ("null", "balanced"):
        result = ftool("train", *common, f"trainer.class_weights={weights}", f"hydra.run.dir=run_{weights}",
                       cwd=workdir)
        assert result.returncode == 0, result.stderr
    plain, balanced = (read_json(workdir / f"run_{name}" / "summary.json") for name in ("null", "balanced"))
    assert "class_weights" not in plain
    legit, rare = balanced["class_weights"]
    assert rare / legit == pytest.approx((1 - fraud.mean()) / fraud.mean(), rel=0.15)  # about 19
    assert legit * (1 - fraud.mean()) + rare * fraud.mean() == pytest.approx(1.0, rel=0.05)  # they average 1
    assert balanced["metrics"]["test/recall"] > plain["metrics"]["test/recall"] + 0.1
    assert balanced["metrics"]["test/precision"] < plain["metrics"]["test/precision"]
    scored = ftool("eval", "ckpt=run_balanced", cwd=workdir)  # the loss as the run weighted it
    assert scored.returncode == 0, scored.stderr
    assert read_json(workdir / "run_balanced" / "eval.json")["metrics"]["test/loss"] == \
        pytest.approx(balanced["metrics"]["test/loss"])
    assert_one_line_error(ftool("train", *common, "trainer.class_weights=[1,2,3]", cwd=workdir),
                          "trainer.class_weights: 3 weights for 2 classes (0, 1); give one per class, in that order")


def test_plateau_lowers_the_lr_and_a_resume_of_the_same_command_continues_it_exactly(workdir):
    plateau = ("scheduler=plateau", "scheduler.patience=1", "scheduler.factor=0.5", "optimizer.lr=0.05")
    whole = train(workdir, workdir / "whole", *plateau, "trainer.epochs=8")
    drops = [line for line in whole.stdout.splitlines() if line.startswith("scheduler=plateau: ")]
    assert drops[0].startswith("scheduler=plateau: val/accuracy did not improve in the last validation (best: ")
    assert drops[0].endswith("the LR drops to 0.025")
    lrs = {r["epoch"]: r["lr"] for r in read_jsonl(workdir / "whole" / "metrics.jsonl") if "lr" in r}
    assert sorted(set(lrs.values()), reverse=True)[:2] == [0.05, 0.025] and list(lrs.values()) == sorted(
        lrs.values(), reverse=True)
    half = workdir / "half"
    train(workdir, half, *plateau, "trainer.epochs=4")  # its last validation lowers the LR
    # the same command again, resumed: its group choice (scheduler=plateau) is the run's (it was refused)
    resumed = ftool("train", *SMALL, *plateau, "trainer.epochs=8", f"trainer.resume={half}", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(weights(workdir / "whole"), weights(half))  # the plateau's state came back with it
    assert_one_line_error(ftool("train", *SMALL, "scheduler=cosine", f"trainer.resume={half}", cwd=workdir),
                          "scheduler=cosine: train uses the config saved with the run", "where a group's option "
                          "cannot be swapped (the run's is scheduler=plateau); set its keys instead (scheduler.<key>=...)")
    assert_one_line_error(ftool("train", *SMALL, "scheduler=plateau", "trainer.validate=false", cwd=workdir),
                          "scheduler=plateau: lowers the LR when val/accuracy stops improving in validation, and "
                          "this run has none (trainer.validate=false)")


def test_compile_and_auto_precision_run_through_the_cli(workdir):
    run = workdir / "run"
    result = train(workdir, run, "trainer.epochs=1", "trainer.compile=true", "trainer.precision=auto")
    assert "No CUDA runtime is found" not in result.stderr  # inductor's note, which means nothing on a CPU run
    env = read_json(run / "summary.json")["environment"]
    assert env["compile"] is True and env["compiled_graphs"] >= 1  # dynamo really captured graphs
    assert env["precision"] == ("bf16-mixed" if cpu_has_bf16() else "32")
    assert read_json(run / "summary.json")["metrics"]["test/loss"] < 10


def test_channels_last_trains_a_conv_net_like_the_default_layout(workdir):
    conv = ("model=simplecnn", "data.shape=[3,16,16]", "trainer.epochs=1")
    train(workdir, workdir / "plain", *conv)
    train(workdir, workdir / "cl", *conv, "trainer.channels_last=true")
    plain, cl = (read_json(workdir / name / "summary.json")["metrics"]["test/loss"] for name in ("plain", "cl"))
    assert cl == pytest.approx(plain, rel=1e-3)  # the same arithmetic, in another memory order


@pytest.mark.parametrize("precision", ["bf16-mixed", "fp16-mixed"])
def test_mixed_precision_with_grad_clipping_and_ema_completes(workdir, precision):
    if precision == "bf16-mixed" and not cpu_has_bf16():
        pytest.skip("this CPU has no bf16")
    run = workdir / "run"
    train(workdir, run, "trainer.epochs=2", "trainer.grad_clip=0.5", "trainer.ema_decay=0.9",
          f"trainer.precision={precision}")
    summary = read_json(run / "summary.json")
    assert summary["status"] == "completed" and summary["environment"]["precision"] == precision
    assert 0 <= summary["metrics"]["test/accuracy"] <= 1
    state = torch.load(run / "checkpoints" / "last.state.pt", weights_only=True)
    assert "ema" in state and bool(state["scaler"]) == (precision == "fp16-mixed")  # fp16 keeps a loss scale


def test_half_precision_a_cpu_would_emulate_is_refused_or_warned_and_evaluated_in_32(monkeypatch, capsys):
    from ftool.config import TrainerConfig
    from ftool.engine import accelerator

    monkeypatch.setattr(accelerator, "cpu_has_bf16", lambda: False)  # as on an AMD Zen 3 or most laptops
    bf16 = TrainerConfig(accelerator="cpu", precision="bf16-mixed")
    with pytest.raises(FtoolError) as refused:
        accelerator.check(bf16, 1)
    assert str(refused.value) == ("trainer.precision: bf16-mixed, and this CPU has no native bfloat16 (AVX512-BF16 "
                                  "or AMX); use 32, or auto (bf16 where the device has it)")
    assert accelerator.check(TrainerConfig(accelerator="cpu", precision="auto"), 1) == ("cpu", "32")
    # eval and predict of a run trained where bf16 was native
    assert accelerator.check(bf16, 1, training=False) == ("cpu", "32")
    assert ("warning: trainer.precision: bf16-mixed, and this CPU has no native bfloat16 (AVX512-BF16 or AMX); "
            "running in 32") in capsys.readouterr().err

    # fp16 trains, emulated (CUDA's recipe with loss scaling, on a CPU), and is evaluated in 32
    monkeypatch.setattr(torch.cpu, "_is_amx_fp16_supported", lambda: False)
    fp16 = TrainerConfig(accelerator="cpu", precision="fp16-mixed")
    assert accelerator.check(fp16, 1) == ("cpu", "fp16-mixed")
    assert ("warning: trainer.precision: fp16-mixed, and this CPU has no native float16 (AMX-FP16): emulated, "
            "training runs many times slower than in 32") in capsys.readouterr().err
    assert accelerator.check(fp16, 1, training=False) == ("cpu", "32")
    assert "fp16-mixed, and this CPU has no native float16 (AMX-FP16); running in 32" in capsys.readouterr().err
    # trainer.devices=2 checks before it starts the processes, and leaves the warning to them (it was printed twice)
    assert accelerator.check(fp16, 2, warns=False) == ("cpu", "fp16-mixed") and capsys.readouterr().err == ""


def test_two_gloo_processes_match_one_process_and_write_one_run_dir(workdir):
    one, two = workdir / "one", workdir / "two"
    # Global batch 128 = 2 processes x 2 accumulated batches x 32 (gradients sync on the 2nd only).
    job = ("trainer.epochs=2", "data.batch_size=64", "trainer.accumulate_grad_batches=2")
    train(workdir, one, *job)
    result = train(workdir, two, *job, "trainer.devices=2")
    threads = int(os.environ.get("OMP_NUM_THREADS") or max(1, len(os.sched_getaffinity(0)) // 2))
    assert f"starting 2 processes ({threads} CPU thread{'s' if threads > 1 else ''} each)" in result.stderr
    assert "Setting OMP_NUM_THREADS" not in result.stderr  # torchrun's banner: ftool chose the threads
    a, b = read_json(one / "summary.json"), read_json(two / "summary.json")
    assert b["status"] == "completed" and b["environment"]["world_size"] == 2
    assert b["environment"]["threads"] == threads
    assert a["timing"]["steps"] == b["timing"]["steps"] == 10  # same global batch, same steps
    assert a["data"] == b["data"]  # the same data described (train_size: all of it, not per process)
    for key, value in a["metrics"].items():
        assert b["metrics"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert_same_weights(weights(one), weights(two), atol=1e-5)
    assert sorted(p.name for p in workdir.iterdir()) == ["one", "two"]  # no second run dir anywhere
    assert len(read_jsonl(two / "metrics.jsonl")) == len(read_jsonl(one / "metrics.jsonl"))
    result = ftool("eval", f"ckpt={two}", cwd=workdir)  # in one process, though the run's config says 2
    assert result.returncode == 0, result.stderr
    evaluated = read_json(two / "eval.json")
    assert evaluated["environment"]["world_size"] == 1
    for key, value in b["metrics"].items():
        if key.startswith("test/"):
            assert evaluated["metrics"][key] == pytest.approx(value, rel=1e-6), key


def test_fsdp_on_two_processes_matches_one_process_across_a_resume(workdir):
    one, two = workdir / "one", workdir / "two"
    job = ("data.batch_size=64", "trainer.accumulate_grad_batches=2")
    train(workdir, one, *job, "trainer.epochs=3")
    train(workdir, two, *job, "trainer.epochs=2", "trainer.devices=2", "trainer.strategy=fsdp")
    # Resuming gathers nothing new: the checkpoint holds whole tensors, which FSDP shards again.
    result = ftool("train", f"trainer.resume={two}", "trainer.epochs=3", cwd=workdir)
    assert result.returncode == 0, result.stderr
    a, b = read_json(one / "summary.json"), read_json(two / "summary.json")
    assert b["environment"]["strategy"] == "fsdp" and b["environment"]["world_size"] == 2
    assert b["resumed_from_step"] == 10 and b["timing"]["steps"] == a["timing"]["steps"] == 15
    for key, value in a["metrics"].items():
        assert b["metrics"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert_same_weights(weights(one), weights(two), atol=1e-5)
    # A one-process run continued under FSDP: its optimizer state, keyed by position, was a KeyError.
    three = workdir / "three"
    train(workdir, three, *job, "trainer.epochs=2")
    result = ftool("train", f"trainer.resume={three}", "trainer.epochs=3", "trainer.devices=2", "trainer.strategy=fsdp",
                   cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert_same_weights(weights(one), weights(three), atol=1e-5)


def test_torchrun_launch_and_devices_mismatch(workdir):
    run = workdir / "run"
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "ftool", "train", *SMALL, "trainer.epochs=1", "trainer.devices=3",
                             f"hydra.run.dir={run}"], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "trainer.devices=3 but torchrun started 2 processes" in result.stderr
    assert read_json(run / "summary.json")["status"] == "failed"


def test_a_failure_in_several_processes_is_one_line_not_torchruns_report(workdir):
    (workdir / "no_classes").mkdir()
    failed = ftool("train", "trainer.progress=false", "data=imagefolder", f"data.root={workdir / 'no_classes'}",
                   "trainer.devices=2", f"hydra.run.dir={workdir / 'a'}", cwd=workdir)
    lines = failed.stderr.strip().splitlines()
    assert failed.returncode == 2 and len(lines) == 2, failed.stderr  # "starting 2 processes", then the error once
    assert lines[0].startswith("ftool: starting 2 processes") and lines[1].startswith("ftool: error: data.root:")

    # A process that dies without a word (the out-of-memory killer's SIGKILL): the launcher says it.
    (workdir / "die_on_rank_1.py").write_text(
        "import os, signal\nif os.environ.get('RANK') == '1':\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    killed = ftool("train", *SMALL, "imports=[die_on_rank_1]", "trainer.devices=2", f"hydra.run.dir={workdir / 'b'}",
                   cwd=workdir)
    assert killed.returncode == 1 and "Traceback" not in killed.stderr, killed.stderr
    assert killed.stderr.strip().endswith("ftool: error: process 1 was killed by SIGKILL (out of memory, most often)")


def test_ddp_with_parameters_a_step_leaves_unused_names_them_and_the_setting_that_allows_them(workdir):
    """DDP's "Expected to have finished reduction in the prior iteration" was a traceback from each process."""
    mine = model_of_your_own(workdir, "two_heads",
        "class TwoHeads(nn.Module):\n"
        "    def __init__(self, features, outputs):\n"
        "        super().__init__()\n"
        "        self.used, self.spare = nn.Linear(features, outputs), nn.Linear(features, outputs)\n"
        "    def forward(self, x):\n"
        "        return self.used(x.flatten(1))\n\n"
        "@MODELS.register('two_heads')\n"
        "def two_heads(input_shape, num_outputs):\n"
        "    return TwoHeads(math.prod(input_shape), num_outputs)\n") + ("trainer.epochs=1", "trainer.devices=2")
    failed = ftool("train", *SMALL, *mine, f"hydra.run.dir={workdir / 'a'}", cwd=workdir)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr
    said = ("trainer.devices=2: a step left spare.weight, spare.bias without a gradient, which DDP refuses; "
            "trainer.find_unused_parameters=true allows it (each step then looks for them), or leave them out of the model")
    assert failed.stderr.strip().endswith(f"ftool: error: {said}")
    assert read_json(workdir / "a" / "summary.json")["error"] == said
    done = ftool("train", *SMALL, *mine, "trainer.find_unused_parameters=true", f"hydra.run.dir={workdir / 'b'}",
                 cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert read_json(workdir / "b" / "summary.json")["status"] == "completed"


def test_a_batch_of_one_sample_that_batchnorm_cannot_train_on_is_one_line_with_a_batch_size_that_can(workdir):
    """torch's "Expected more than 1 value per channel when training": a traceback after a whole epoch."""
    mine = (*SMALL, *model_of_your_own(workdir, "bn_mlp",
        "@MODELS.register('bn_mlp')\n"
        "def bn_mlp(input_shape, num_outputs):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 16), nn.BatchNorm1d(16), nn.ReLU(),\n"
        "                         nn.Linear(16, num_outputs))\n"), "trainer.epochs=1")
    run = workdir / "run"
    result = ftool("train", *mine, "data.batch_size=7", f"hydra.run.dir={run}", cwd=workdir)  # 540 = 77 x 7 + 1
    said = ("model: its BatchNorm layers cannot train on one sample, and the epoch's last batch holds one (540 samples "
            "in batches of 7); data.batch_size=8 makes it 4")
    assert_one_line_error(result, said)
    assert read_json(run / "summary.json")["error"] == said
    assert_one_line_error(ftool("train", *mine, "data.batch_size=1", cwd=workdir),
                          "model: its BatchNorm layers cannot train on batches of one sample (data.batch_size=1); give more")
    assert ftool("train", *mine, "data.batch_size=8", cwd=workdir).returncode == 0


def test_finetune_starts_its_processes_as_train_does(workdir):
    pretrained, tuned = workdir / "pretrained", workdir / "tuned"
    train(workdir, pretrained, "trainer.epochs=1")
    result = ftool("finetune", *SMALL, f"finetune.from={pretrained}", "trainer.epochs=1", "trainer.devices=2",
                   f"hydra.run.dir={tuned}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    summary = read_json(tuned / "summary.json")
    assert summary["command"] == "finetune" and summary["environment"]["world_size"] == 2
    assert summary["finetune"]["pretrained_parameters"] > 0
    assert result.stdout.count(" tensors from ") == 1, result.stdout  # said once, not once per process


def test_early_stopping_stops_after_patience_validations(workdir):
    run = workdir / "run"
    result = train(workdir, run, "trainer.epochs=10", "trainer.early_stopping_patience=2",
                   "trainer.early_stopping_min_delta=10")  # no epoch can improve by 10
    summary = read_json(run / "summary.json")
    assert summary["stopped_early"] is True and summary["timing"]["epochs"] == 3
    best, epoch = f"{summary['best']['value']:.4f}", summary["best"]["epoch"]
    out = " ".join(result.stdout.split())  # (the console wraps long lines)
    # where it stopped and the epoch whose figures the results table shows (the best), not the last
    assert (f"early stopping after epoch 3/10: val/accuracy has not improved by more than 10.0 for 2 validations "
            f"(best: {best}, epoch {epoch})") in out
    assert f"val/accuracy │ {best}" in out  # the best epoch's
    # the results table's val and test figures are the best epoch's, which is not the last here: say so
    # (mode=max makes the first epoch's loss, the highest, the best)
    result = train(workdir, workdir / "worst", "trainer.epochs=10", "trainer.early_stopping_patience=2",
                   "trainer.monitor=val/loss", "trainer.mode=max")
    summary = read_json(workdir / "worst" / "summary.json")
    assert summary["best"]["epoch"] == 1 and summary["timing"]["epochs"] == 3
    assert "val and test figures: epoch 1, the best by val/loss; train/loss: epoch 3" in " ".join(result.stdout.split())
    assert "val and test figures" not in train(workdir, workdir / "plain", "trainer.epochs=1").stdout  # the last epoch's
    # A resume of a run that stopped early is skipped, unless it stops otherwise (it was skipped whatever it asked)
    resumed = ftool("train", f"trainer.resume={workdir / 'worst'}", cwd=workdir)
    assert "completed before; skipped (trainer.resume; another trainer.early_stopping_patience (0: none) would " \
           "continue it, as it stopped early)" in " ".join(resumed.stdout.split())
    assert ftool("train", f"trainer.resume={workdir / 'worst'}", "trainer.early_stopping_patience=4",
                 cwd=workdir).returncode == 0
    summary = read_json(workdir / "worst" / "summary.json")
    assert summary["resumed_from_step"] > 0 and summary["timing"]["epochs"] == 5 and summary["stopped_early"]


def test_an_l1_loss_fits_a_table_with_outliers_where_mse_is_pulled_by_them(workdir):
    """Targets 5% of which are off by 50-100 train a linear model; the clean test table shows the fit."""
    rng = torch.Generator().manual_seed(0)

    def table(path, rows, outliers):
        x = torch.randn(rows, 3, generator=rng)
        y = x @ torch.tensor([3.0, -2.0, 1.0]) + 5 + 0.5 * torch.randn(rows, generator=rng)
        if outliers:
            hit = torch.rand(rows, generator=rng) < 0.05
            y[hit] += 75 * torch.sign(torch.randn(int(hit.sum()), generator=rng))
        path.write_text("a,b,c,y\n" + "".join(f"{a:.4f},{b:.4f},{c:.4f},{t:.4f}\n" for (a, b, c), t in zip(x.tolist(), y)))

    table(workdir / "train.csv", 1000, outliers=True)
    table(workdir / "clean.csv", 300, outliers=False)
    result = ftool("train", "-m", "model=linear", "data=table", "data.path=train.csv", "data.test_path=clean.csv",
                   "trainer.loss=mse,l1", "optimizer.lr=0.01", "trainer.epochs=10", "trainer.progress=false",
                   "hydra.sweep.dir=losses", cwd=workdir)
    assert result.returncode == 0, result.stderr
    mse, l1 = (read_json(workdir / "losses" / job / "summary.json")["metrics"]["test/mae"] for job in "01")
    assert l1 < 0.6 < 2 * l1 < mse  # the noise alone gives a mean |error| of 0.4


def test_a_non_finite_loss_stops_the_run_naming_the_step(workdir):
    run = workdir / "run"
    diverge = ("model=linear", "data=regression", "optimizer=sgd", "optimizer.lr=1e6", "trainer.epochs=3")
    result = ftool("train", *diverge, f"hydra.run.dir={run}", cwd=workdir)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "non-finite loss at step" in result.stderr and "trainer.on_nonfinite=skip" in result.stderr
    assert read_json(run / "summary.json")["status"] == "failed"

    # skip: a stray bad batch is skipped (here the model's third training forward gives NaN) ...
    (workdir / "flaky.py").write_text(
        "import torch\nfrom torch import nn\nfrom ftool.registry import MODELS\n\n"
        "class Flaky(nn.Linear):\n"
        "    calls = 0\n"
        "    def forward(self, x):\n"
        "        Flaky.calls += self.training\n"
        "        return super().forward(x) * (float('nan') if self.training and Flaky.calls == 3 else 1.0)\n\n"
        "@MODELS.register('flaky')\n"
        "def flaky(input_shape, num_outputs, bias: bool = True):\n"
        "    return Flaky(input_shape[0], num_outputs)\n")
    skipped = workdir / "skipped"
    result = ftool("train", "model=linear", "model.name=flaky", "imports=[flaky]", "data=regression", "optimizer=sgd",
                   "trainer.epochs=3", "trainer.on_nonfinite=skip", f"hydra.run.dir={skipped}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("non-finite loss, step skipped") == 1 and "step 3:" in result.stderr
    assert all(torch.isfinite(t).all() for t in weights(skipped).values())
    assert read_json(skipped / "summary.json")["metrics"]["test/r2"] > 0.9
    # ... and a model that diverged stops: its every step was skipped, to the run's end (exit status 0)
    diverged = workdir / "diverged"
    result = ftool("train", *diverge, "trainer.on_nonfinite=skip", f"hydra.run.dir={diverged}", cwd=workdir)
    assert result.returncode == 2 and result.stderr.count("step skipped") == 9
    assert "(epoch 1) all had a non-finite loss: the model has diverged, which skipping steps cannot undo" in result.stderr
    assert read_json(diverged / "summary.json")["status"] == "failed"


def test_tensorboard_and_csv_loggers_write_real_files(workdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = workdir / "run"
    train(workdir, run, "trainer.epochs=2", "trainer.log_every_n_steps=2", "logger=[tensorboard,csv]")
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/loss_step", "train/lr", "train/samples_per_s", "val/loss", "val/accuracy",
            "test/accuracy"} <= tags
    assert [e.step for e in events.Scalars("val/accuracy")] == [5, 10]
    # TensorBoard's HParams tab: the run's settings, and the metrics to show beside them
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    hparams = events.PluginTagToContent("hparams")
    settings = HParamsPluginData.FromString(hparams["_hparams_/session_start_info"]).session_start_info.hparams
    assert settings["model.name"].string_value == "mlp" and settings["optimizer.lr"].number_value == 0.001
    experiment = HParamsPluginData.FromString(hparams["_hparams_/experiment"]).experiment
    assert {"val/accuracy", "test/accuracy"} <= {m.name.tag for m in experiment.metric_infos}
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,split,metric,value" and any(",val,val/accuracy," in r for r in rows)

    # Resumed, each log reads as one run: what came after the checkpoint is not there twice.
    assert ftool("train", f"trainer.resume={run}", "trainer.epochs=3", cwd=workdir).returncode == 0
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("val/accuracy")] == [5, 10, 15]
    rows = [r.split(",") for r in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert [int(r[0]) for r in rows if r[3] == "val/accuracy"] == [5, 10, 15]
    assert [int(r[0]) for r in rows if r[3] == "test/accuracy"] == [15]


def test_a_new_run_replaces_the_logs_a_failed_attempt_left_and_a_resumed_one_keeps_its_own(tmp_path):
    from ftool.engine.loggers import CsvLogger, JsonlLogger, TensorBoardLogger
    from ftool.rundir import read_records

    def records(*steps_and_splits):
        return [{"step": step, "epoch": 1, "split": split, f"{split}/loss": 0.5} for step, split in steps_and_splits]

    for resumed_at, kept in ((None, []), (5, records((5, "train"), (5, "val")))):
        logged = records((5, "train"), (5, "val"), (8, "train"), (8, "test"))
        jsonl = JsonlLogger(tmp_path / "metrics.jsonl")
        csv_log = CsvLogger(tmp_path)
        for r in logged:
            jsonl.log(r)
            csv_log.log(r)
        jsonl.close()
        csv_log.close()
        JsonlLogger(tmp_path / "metrics.jsonl", resumed_at).close()
        CsvLogger(tmp_path, resumed_at=resumed_at).close()
        assert read_records(tmp_path / "metrics.jsonl") == kept
        rows = (tmp_path / "metrics.csv").read_text().splitlines()
        assert rows == ["step,epoch,split,metric,value"] + [f"5,1,{r['split']},{r['split']}/loss,0.5" for r in kept]

    TensorBoardLogger(tmp_path).close()
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 1
    TensorBoardLogger(tmp_path).close()  # a new run: the earlier attempt's events go
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 1


def test_a_logger_whose_package_is_missing_says_how_to_get_it(workdir):
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    assert_one_line_error(ftool("train", *SMALL, "logger=wandb", cwd=workdir), "pip install wandb")


def test_mlflow_gets_each_runs_settings_metrics_and_how_it_ended(workdir):
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{workdir / 'mlflow.db'}"
    ftool("train", "-m", *SMALL, "trainer.max_steps=6", "logger=mlflow", f"logger.mlflow.tracking_uri={store}",
          "optimizer.lr=0.001,1e12", "hydra.sweep.dir=lr", cwd=workdir)  # the second job diverges
    client = MlflowClient(store)
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("ftool").experiment_id])}
    good, diverged = runs["lr/0"], runs["lr/1"]  # named by their run dirs
    assert good.info.status == "FINISHED" and diverged.info.status == "FAILED"
    assert good.data.params["optimizer.lr"] == "0.001" and good.data.params["model.name"] == "mlp"
    assert diverged.data.params["optimizer.lr"] == "1000000000000.0"
    accuracy = read_json(workdir / "lr" / "0" / "summary.json")["metrics"]["test/accuracy"]
    assert good.data.metrics["test_accuracy"] == pytest.approx(accuracy)
    # A logger that fails to start ends the MLflow run started before it, which would otherwise stay
    # active and refuse the sweep's next job ("Run ... is already active").
    import mlflow

    from ftool.engine.loggers import Loggers, MlflowLogger

    (workdir / "not-a-folder").write_text("")
    with pytest.raises(OSError):
        Loggers(workdir, workdir / "metrics.jsonl", {"mlflow": {"tracking_uri": store},
                                                     "tensorboard": {"dir": "not-a-folder"}})
    assert mlflow.active_run() is None

    # The tracker's own refusal is an ftool error (one line): MLflow 3 retired the ./mlruns file store.

    with pytest.raises(FtoolError, match="^logger.mlflow: The filesystem tracking backend") as refused:
        MlflowLogger(workdir, tracking_uri=f"file://{workdir / 'mlruns'}")
    assert "\n" not in str(refused.value)


def test_deterministic_mode_sets_the_cublas_workspace_cuda_needs_for_it(monkeypatch):
    from ftool.engine.trainer import seed_everything

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)  # a user's own setting would be kept
    try:
        seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"  # else CUDA matmuls raise in this mode
    finally:
        seed_everything(0, deterministic=False)
