"""The command line end to end: what a run writes, one-line errors, sweeps, signals, your own components."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import one_line_error, read_json, read_jsonl


def test_help_lists_commands_and_options_without_importing_torch_or_hydra():
    code = ("import sys; from ftool.cli import main; main(['--help']); "
            "print('imported:', [m for m in ('torch', 'hydra') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "imported: []" in out
    assert "simplecnn*" in out and "finetune" in out and "hparams_search" in out


def test_train_writes_the_run_directory_and_eval_reproduces_its_test_metrics(cli, tmp_path):
    result = cli("train", "trainer.epochs=2", "hydra.run.dir=runs/a")
    assert result.code == 0, result.err
    run = tmp_path / "runs" / "a"
    summary = read_json(run / "summary.json")
    assert summary["status"] == "completed" and summary["command"] == "train"
    assert summary["best"]["monitor"] == "val/accuracy" and summary["metrics"]["test/accuracy"] > 0.8
    assert summary["checkpoints"] == {"best": "checkpoints/best.safetensors", "last": "checkpoints/last.safetensors"}
    assert summary["timing"]["train_samples_per_s"] > 0 and summary["environment"]["accelerator"] == "cpu"
    assert summary["config"]["trainer"]["epochs"] == 2 and summary["data"]["class_names"][:2] == ["0", "1"]
    assert {r["split"] for r in read_jsonl(run / "metrics.jsonl")} == {"train", "val", "test"}
    assert (run / ".hydra" / "config.yaml").is_file() and (run / ".hydra" / "overrides.yaml").is_file()
    result = cli("eval", "ckpt=runs/a", "trainer.progress=false")
    assert result.code == 0, result.err
    evaluated = read_json(run / "eval.json")
    assert evaluated["metrics"] == {k: v for k, v in summary["metrics"].items() if k.startswith("test/")}
    assert len(evaluated["per_class"]["confusion_matrix"]) == 10 and "most often mistaken for" in result.out


def test_a_mistake_is_one_line_and_makes_no_run_directory(cli, tmp_path):
    one_line_error(cli("train", "model=simplecn"), "model=simplecn: no such model", "Did you mean 'simplecnn'?")
    one_line_error(cli("train", "trainer.epoch=3"), "trainer.epoch: no such key", "Did you mean 'epochs'?")
    one_line_error(cli("train", "epochs=3"), "Did you mean 'trainer.epochs'?")
    one_line_error(cli("train", "callbacks=[lr_monitor,model_sumary]"), "Did you mean 'model_summary'?")
    one_line_error(cli("train", "optimizer.lr=-1"), "optimizer.lr: must be > 0")
    one_line_error(cli("trian"), "unknown command 'trian'", "Did you mean 'train'?")
    one_line_error(cli("eval"), "eval needs ckpt=...")
    one_line_error(cli("eval", "ckpt=x", "split=tset"), "split: must be test, val, train, all", "Did you mean 'test'?")
    one_line_error(cli("eval", "ckpt=nowhere"), "ckpt:", "holds no checkpoints")
    result = cli("train", "trainer.precision=bf16", "data.batch_size=0")
    assert result.code == 2 and len(result.err.splitlines()) == 2  # every problem at once, a line each
    assert not (tmp_path / "outputs").exists()


def test_a_librarys_error_is_one_line_saying_what_failed_and_the_run_records_it(cli, tmp_path):
    from tests.conftest import write_image_folder

    write_image_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "cat" / "broken.png").write_bytes(b"not an image")
    args = ("train", "data=imagefolder", "data.root=imgs", "data.image_size=[8,8]", "data.val_fraction=0",
            "data.num_workers=0", "trainer.epochs=1", "hydra.run.dir=runs/broken", "data.batch_size=100")
    result = cli(*args)
    line = result.err.strip().splitlines()[-1]
    assert result.code == 1 and line.startswith("ftool: error: reading data=imagefolder: UnidentifiedImageError:"), \
        result.err  # (the images are read once, into tensors, before training)
    summary = read_json(tmp_path / "runs" / "broken" / "summary.json")
    assert summary["status"] == "failed" and summary["error"].startswith("reading data=imagefolder: UnidentifiedImage")
    with pytest.raises(Exception, match="cannot identify image file"):  # --debug: the exception itself
        cli(*args[:-2], "hydra.run.dir=runs/debug", "data.batch_size=100", "--debug")


def test_a_new_run_never_writes_into_another_runs_directory(cli, tmp_path):
    assert cli("train", "trainer.epochs=1", "hydra.run.dir=runs/a").code == 0
    one_line_error(cli("train", "trainer.epochs=1", "hydra.run.dir=runs/a"), "holds a run with checkpoints")
    result = cli("train", "trainer.epochs=2", "hydra.run.dir=runs/a", "trainer.resume=auto")
    assert result.code == 0 and "resuming at step" in result.out
    assert read_json(tmp_path / "runs/a/summary.json")["timing"]["epochs"] == 2
    result = cli("train", "trainer.epochs=2", "hydra.run.dir=runs/a", "trainer.resume=auto")
    assert "completed before; skipped" in result.out


def test_cfg_job_prints_the_composed_config_and_runs_nothing(cli, tmp_path):
    result = cli("train", "--cfg", "job", "optimizer=sgd")
    assert result.code == 0 and "name: sgd" in result.out and "momentum: 0.9" in result.out
    assert not (tmp_path / "outputs").exists()


def test_overrides_are_read_as_a_shell_user_means_them(cli, tmp_path):
    result = cli("train", "trainer.epochs=1", "hydra.run.dir=runs/训练", "data.classes=[0,1,2]")
    assert result.code == 0, result.err
    assert read_json(tmp_path / "runs" / "训练" / "summary.json")["data"]["class_names"] == ["0", "1", "2"]


def test_a_sweep_runs_each_job_and_a_failed_one_fails_only_itself(cli, tmp_path):
    result = cli("train", "-m", "optimizer.lr=0.01,-1", "trainer.epochs=1", "trainer.progress=false",
                 "hydra.sweep.dir=sweep")
    assert result.code == 1
    assert read_json(tmp_path / "sweep/0/summary.json")["status"] == "completed"
    failed = read_json(tmp_path / "sweep/1/summary.json")
    assert failed["status"] == "failed" and "optimizer.lr: must be > 0" in failed["error"]
    assert "sweep: 2 jobs in sweep; best val/accuracy" in result.out and "1 job(s) failed" in result.err


def test_your_own_model_and_config_group_register_from_your_module(cli, tmp_path):
    (tmp_path / "my_nets.py").write_text(
        "from torch import nn\nfrom ftool.registry import MODELS\n\n"
        "@MODELS.register('wide_mlp')\ndef wide_mlp(input_shape, num_outputs, width: int = 16):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, num_outputs))\n")
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "wide_mlp.yaml").write_text("name: wide_mlp\ninit: default\nwidth: 32\n")
    result = cli("train", "--config-dir", "conf", "model=wide_mlp", "imports=[my_nets]", "trainer.epochs=1",
                 "hydra.run.dir=runs/mine")
    assert result.code == 0, result.err
    assert read_json(tmp_path / "runs/mine/summary.json")["parameters"] == 64 * 32 + 32 + 32 * 10 + 10
    assert cli("eval", "ckpt=runs/mine").code == 0  # rebuilt from the run's record, which names the module


def test_a_signal_saves_a_checkpoint_marks_the_run_interrupted_and_resume_finishes_it(cli, tmp_path):
    args = ["train", "data=synthetic", "data.shape=[3,32,32]", "data.train_size=2048", "trainer.epochs=2",
            "trainer.progress=false", "trainer.log_every_n_steps=2", "hydra.run.dir=run"]
    process = subprocess.Popen([sys.executable, "-m", "ftool", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    while not (tmp_path / "run" / "metrics.jsonl").is_file() or not (tmp_path / "run/metrics.jsonl").read_text():
        time.sleep(0.2)
        assert process.poll() is None, process.stderr.read()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    summary = read_json(tmp_path / "run" / "summary.json")
    assert summary["status"] == "interrupted" and (tmp_path / "run/checkpoints/last.state.pt").is_file()
    finished = cli(*args, "trainer.resume=auto")
    assert finished.code == 0 and "resuming at step" in finished.out, finished.err
    assert read_json(tmp_path / "run" / "summary.json")["status"] == "completed"


def test_the_console_script_and_tab_completion(tmp_path):
    script = Path(sys.executable).parent / "ftool"
    assert subprocess.run([script, "--version"], capture_output=True, text=True).stdout.startswith("ftool ")
    env = {**os.environ, "COMP_LINE": "ftool train optimizer=sgd optimizer.mo", "COMP_POINT": "38"}
    out = subprocess.run([script, "-sc", "query=bash"], capture_output=True, text=True, env=env).stdout
    assert "optimizer.momentum=" in out
