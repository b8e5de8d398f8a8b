"""The real `ftool` CLI in subprocesses: what a user types, what they get back."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error, ftool, read_json, read_jsonl
from tests.dataset_files import write_image_folder

SUMMARY_KEYS = {"command", "status", "metrics", "best", "checkpoints", "timing", "environment"}


def test_help_lists_commands_and_config_options_without_importing_torch(workdir):
    code = ("import sys; sys.argv = ['ftool', '--help']; from ftool.cli import main; main(); "
            "assert 'torch' not in sys.modules and 'hydra' not in sys.modules, 'help imported torch/hydra'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=workdir)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "train" in out and "eval" in out
    assert "simplecnn*" in out and "resnet50" in out and "digits*" in out and "fashion_mnist" in out
    assert "onecycle" in out and "adamw" in out


def test_printing_the_config_or_hydras_help_imports_no_torch(workdir):
    printed = {}
    for flag in ("--cfg", "--info", "--hydra-help"):
        args = ["train", flag, *(["job", "optimizer.lr=-1"] if flag == "--cfg" else [])]  # printed, though invalid
        code = (f"import sys; sys.argv = ['ftool', *{args}]; from ftool.cli import main\n"
                "try: main()\nexcept SystemExit as e: assert not e.code, e.code\n"
                "assert 'torch' not in sys.modules, 'imported torch'")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=workdir)
        assert result.returncode == 0, result.stderr
        printed[flag] = result.stdout
    assert "optimizer:\n  name: adam\n  lr: -1\n" in printed["--cfg"] and "Config search path" in printed["--info"]


def test_the_tests_forked_cli_answers_as_a_fresh_interpreter(workdir):
    """tests/forked_cli.py's shortcut changes nothing a test reads: streams, exit status, folder."""
    (workdir / "configs" / "model").mkdir(parents=True)  # a relative --config-dir: read in the folder
    (workdir / "configs" / "model" / "mine.yaml").write_text("name: mlp\nhidden: [7]\n")
    # how DataLoader workers start: through the tests' forkserver, they outlived an early exit with a traceback
    (workdir / "start_method.py").write_text("import multiprocessing, sys\n"
                                             "print(multiprocessing.get_start_method(), file=sys.stderr)\n")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    answers = {}
    for args in (("train", "trainer.epochs=-1"), ("train", "--cfg", "job", "--config-dir", "configs", "model=mine"),
                 ("eval", "ckpt=nowhere"), ("tarin",), ("train", "imports=[start_method]", "trainer.epochs=-1")):
        fresh = subprocess.run([sys.executable, "-m", "ftool", *args], cwd=workdir, capture_output=True, text=True,
                               env=env)
        forked = ftool(*args, cwd=workdir)
        assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
        answers[args[0] if args[0] != "train" else args[1]] = fresh
    assert answers["--cfg"].returncode == 0 and "hidden:\n  - 7" in answers["--cfg"].stdout
    assert answers["trainer.epochs=-1"].stderr == "ftool: error: trainer.epochs: must be >= 0, got -1\n"
    assert answers["eval"].returncode == answers["tarin"].returncode == 2


def test_tab_completion_in_bash_gives_the_command_then_its_config_keys(workdir):
    """The script a user installs, run by a real bash asking as it does when Tab is pressed."""
    script = ('eval "$(ftool -sc install=bash)"; complete -p ftool\n'
              'ask() { COMP_LINE="$1"; COMP_POINT=${#1}; COMP_CWORD=$2; hydra_bash_completion; echo "${COMPREPLY[*]}"; }\n'
              'ask "ftool fi" 1; ask "ftool train optimizer=sgd optimizer.mo" 3; ask "ftool eval " 2\n'
              'ask "ftool eval ckpt=runs/m" 2')
    (workdir / "runs" / "mnist").mkdir(parents=True)  # eval's ckpt= takes a run folder
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # where pip put the `ftool` script
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=workdir,
                            env={**os.environ, "PATH": path}, timeout=120)
    assert result.stdout.splitlines() == ["complete -o default -o nospace -F hydra_bash_completion ftool",
                                          "finetune", "optimizer.momentum=", "ckpt= split=", "ckpt=runs/mnist/"], \
        result.stderr
    assert_one_line_error(ftool("-sc", "install=tcsh", cwd=workdir),
                          "-sc needs install=, uninstall= or query= with bash, zsh or fish, got install=tcsh")


def test_a_commands_help_says_what_it_takes_then_shows_the_config(workdir):
    result = ftool("predict", "--help", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ftool predict: label new inputs: ckpt=<run dir|file> input=")
    groups = next(line for line in result.stdout.splitlines() if line.startswith("data: "))
    assert "text_files" in groups and "_loader" not in groups and "data_loader" not in groups  # options only
    assert "optimizer:\n  name: adam" in result.stdout  # Hydra's composed config follows


def test_hydras_info_flag_takes_a_topic_or_none():
    from ftool.cli import split_args
    from ftool.commands import COMMANDS

    train = COMMANDS["train"]
    assert split_args(["--info", "defaults", "trainer.epochs=2"], train)[1:] == (["--info", "defaults"],
                                                                                ["trainer.epochs=2"])
    assert split_args(["-i", "trainer.epochs=2"], train)[1:] == (["-i", "all"], ["trainer.epochs=2"])  # not a topic


def test_a_bare_info_flag_prints_hydras_information(workdir):
    result = ftool("train", "--info", cwd=workdir)  # ftool's own overrides follow it to Hydra
    assert result.returncode == 0 and "Config search path" in result.stdout and "Defaults List" in result.stdout


def test_default_train_then_eval_reproduces_the_test_metrics(workdir):
    run = workdir / "run"
    result = ftool("train", f"hydra.run.dir={run}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "test/accuracy" in result.stdout  # the results table
    assert "warning:" not in result.stdout + result.stderr

    summary = read_json(run / "summary.json")
    assert SUMMARY_KEYS <= set(summary) and summary["status"] == "completed"
    assert summary["metrics"]["test/accuracy"] >= 0.975
    assert summary["best"]["monitor"] == "val/accuracy" and 1 <= summary["best"]["epoch"] <= 20
    assert summary["environment"]["world_size"] == 1 and summary["environment"]["accelerator"] == "cpu"
    assert summary["timing"]["train_samples_per_s"] > 0
    assert summary["timing"]["train_samples"] == 20 * 1294 - 32  # all epochs but the warm-up batch
    assert summary["timing"]["total_seconds"] < 60
    assert (run / ".hydra" / "config.yaml").is_file() and (run / ".hydra" / "overrides.yaml").is_file()
    assert (run / summary["checkpoints"]["best"]).is_file() and (run / summary["checkpoints"]["last"]).is_file()
    records = read_jsonl(run / "metrics.jsonl")
    assert {r["split"] for r in records} == {"train", "val", "test"}
    assert all({"step", "epoch", "split"} <= set(r) for r in records)
    assert [r["epoch"] for r in records if r["split"] == "val"] == list(range(1, 21))

    result = ftool("eval", f"ckpt={run}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    evaluated = read_json(run / "eval.json")
    assert evaluated["split"] == "test" and evaluated["epoch"] == summary["best"]["epoch"]
    for name, value in evaluated["metrics"].items():
        assert value == summary["metrics"][name], name  # exactly, not approximately
    confusion = evaluated["per_class"]["confusion_matrix"]  # rows: the test split's 359 digits by class
    assert evaluated["per_class"]["classes"] == [str(d) for d in range(10)] and sum(map(sum, confusion)) == 359
    assert sum(confusion[i][i] for i in range(10)) / 359 == pytest.approx(evaluated["metrics"]["test/accuracy"])
    assert "per class" in result.stdout and "most often mistaken for" in result.stdout
    assert not (workdir / "outputs").exists()  # eval writes into the run it evaluates
    assert_one_line_error(ftool("eval", f"ckpt={run}", "data=cifar10", cwd=workdir),  # its saved config has no groups
                          "data=cifar10: eval uses the config saved with the run", "set its keys instead")
    assert_one_line_error(ftool("eval", f"ckpt={run}", "ckpt_name=best", cwd=workdir),  # not a key: a mistyped option
                          "ckpt_name: no such key; the config has", "eval takes ckpt=, split=. Did you mean 'ckpt'?")
    result = ftool("eval", f"ckpt={run / 'checkpoints'}", cwd=workdir)  # the checkpoints folder means its run
    assert result.returncode == 0 and f"checkpoint: {run / 'checkpoints' / 'best.safetensors'}" in result.stdout

    # A run dir that refuses eval.json (read-only; simulated, as root may write anywhere): the figures are shown.
    refuse = ("import errno, sys; import ftool.engine.atomic as a; from ftool.cli import main\n"
              "def refused(path, obj): raise PermissionError(errno.EACCES, 'Permission denied', str(path))\n"
              f"a.atomic_write_json = refused; sys.argv = ['ftool', 'eval', 'ckpt={run}']; main()")
    result = subprocess.run([sys.executable, "-c", refuse], capture_output=True, text=True, cwd=workdir)
    assert result.returncode == 1 and "test/accuracy" in result.stdout and "per class" in result.stdout
    assert result.stderr.strip() == f"ftool: error: Permission denied: {run / 'eval.json'}"

    result = ftool("eval", f"ckpt={run / 'checkpoints' / 'best.safetensors'}", "split=val",
                   "data.eval_batch_size=512", cwd=workdir)
    assert result.returncode == 0, result.stderr
    evaluated = read_json(run / "eval.json")
    assert evaluated["split"] == "val"
    assert evaluated["metrics"]["val/accuracy"] == pytest.approx(summary["best"]["value"], abs=1e-6)

    result = ftool("eval", f"ckpt={run}", "split=train", cwd=workdir)  # the samples it learned from
    assert result.returncode == 0, result.stderr
    evaluated = read_json(run / "eval.json")
    assert evaluated["split"] == "train" and evaluated["data"]["samples"] == summary["data"]["train_size"] == 1294
    assert "eval (train split, 1,294 samples)" in result.stdout
    assert evaluated["metrics"]["train/accuracy"] > summary["metrics"]["test/accuracy"]  # it fits them best
    assert_one_line_error(ftool("eval", f"ckpt={run}", "split=training", cwd=workdir),
                          "split: must be test, val, train or all, got 'training'")


def test_multirun_writes_one_complete_run_dir_per_job(workdir):
    sweep = workdir / "sweep"
    result = ftool("train", "-m", "optimizer.lr=0.01,0.001", "trainer.epochs=1", f"hydra.sweep.dir={sweep}",
                   cwd=workdir)
    assert result.returncode == 0, result.stderr
    for job, lr in (("0", "0.01"), ("1", "0.001")):
        summary = read_json(sweep / job / "summary.json")
        assert summary["status"] == "completed" and summary["timing"]["epochs"] == 1
        assert f"optimizer.lr={lr}" in (sweep / job / ".hydra" / "overrides.yaml").read_text()
        assert (sweep / job / "checkpoints" / "best.safetensors").is_file()


def test_a_failing_sweep_job_is_marked_failed_and_the_others_complete(workdir):
    sweep = workdir / "sweep"
    result = ftool("train", "-m", "data.batch_size=32,0", "trainer.epochs=1", f"hydra.sweep.dir={sweep}",
                   cwd=workdir)
    assert result.returncode == 1
    assert "data.batch_size: must be >= 1, got 0" in result.stderr and "1 job(s) failed" in result.stderr
    assert read_json(sweep / "0" / "summary.json")["status"] == "completed"
    failed = read_json(sweep / "1" / "summary.json")
    assert failed["status"] == "failed" and "data.batch_size" in failed["error"]


@pytest.mark.parametrize("args,check", [
    (["model=mlp", "data=synthetic", "data.shape=[1,28,28]", "data.train_size=1024"],
     lambda s: s["data"]["input_shape"] == [1, 28, 28] and s["parameters"] == 784 * 128 + 128 + 128 * 64 + 64 + 650),
    (["model=linear", "data=regression", "optimizer=sgd"],
     lambda s: s["metrics"]["test/r2"] > 0.9 and s["best"]["monitor"] == "val/loss" and s["parameters"] == 11),
    (["model=convnet", "data=synthetic", "data.train_size=512"],
     lambda s: s["data"]["input_shape"] == [3, 32, 32] and "test/accuracy" in s["metrics"]),
    (["model=resnet18", "data=synthetic", "data.train_size=256", "data.batch_size=64"],
     lambda s: s["parameters"] == 11_181_642 and "test/accuracy" in s["metrics"]),
])
def test_each_seed_model_trains_one_epoch_through_the_cli(workdir, args, check):
    run = workdir / "run"
    result = ftool("train", *args, "trainer.epochs=1", f"hydra.run.dir={run}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    summary = read_json(run / "summary.json")
    assert summary["status"] == "completed" and check(summary), summary


def test_imagefolder_trains_from_png_files(workdir):
    write_image_folder(workdir / "pets", per_class=12)
    run = workdir / "run"
    result = ftool("train", "data=imagefolder", f"data.root={workdir / 'pets'}", "data.num_workers=0",
                   "trainer.epochs=3", f"hydra.run.dir={run}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    summary = read_json(run / "summary.json")
    assert summary["data"]["class_names"] == ["cat", "dog"] and summary["data"]["input_shape"] == [3, 12, 10]


@pytest.mark.parametrize("name", ["broken.png", "0.png"])  # 0.png: the first image, which sets the size
def test_a_file_in_an_image_folder_that_is_no_image_is_named_in_one_line(workdir, name):
    write_image_folder(workdir / "pets", per_class=12)
    broken = workdir / "pets" / "cat" / name
    broken.write_text("not a png")
    run = workdir / "run"
    result = ftool("train", "data=imagefolder", f"data.root={workdir / 'pets'}", "data.num_workers=2",
                   "trainer.epochs=1", f"hydra.run.dir={run}", cwd=workdir)  # raised in a loader worker
    message = f"data.root: {broken} is not an image (cannot identify image file"
    assert_one_line_error(result, message)
    assert read_json(run / "summary.json")["error"].startswith(message)


def test_data_with_one_class_is_one_line(workdir):
    write_image_folder(workdir / "cats", classes=("cat",), per_class=12)
    assert_one_line_error(ftool("train", "data=imagefolder", f"data.root={workdir / 'cats'}", cwd=workdir),
                          "data: found 1 class (cat); a classifier needs at least 2")


def test_max_steps_wins_over_epochs(workdir):
    run = workdir / "run"
    result = ftool("train", "trainer.max_steps=7", f"hydra.run.dir={run}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    timing = read_json(run / "summary.json")["timing"]
    assert timing["steps"] == 7 and timing["epochs"] == 1


@pytest.mark.parametrize("args,fragments", [
    (["model=simplecn"], ["model=simplecn: no such model", "convnet, hf_classifier, linear", "Did you mean 'simplecnn'?"]),
    (["optimizer.lr=abc"], ["optimizer.lr:", "'abc'"]),
    (["optimizer.lr=-1"], ["optimizer.lr: must be > 0, got -1.0"]),
    (["trainer.epochs=-1"], ["trainer.epochs: must be >= 0, got -1"]),
    (["trainer.epoch=3"], ["trainer.epoch: no such key", "Did you mean 'epochs'?"]),
    (["--cfg", "job", "trainer.epoch=3"], ["trainer.epoch: no such key"]),  # (no config to print: Hydra's 6 lines)
    (["trainer.monitor=val/acc"], ["'val/acc' is never logged", "val/accuracy"]),
    (["trainer.early_stopping_patience=2", "data.val_fraction=0"],
     ["trainer.early_stopping_patience: needs validation", "data.val_fraction=0.0 holds out no data"]),
    (["trainer.monitor=val/loss", "trainer.validate=false"],  # the best checkpoint would go unchosen
     ["trainer.monitor: needs validation, and this run has none (trainer.validate=false)"]),
    (["-m", "model=simplecnn,convnt"], ["model=convnt: no such model", "Did you mean 'convnet'?"]),
    # sweeps of no jobs, and Hydra's own tracebacks
    (["-m", "optimizer=glob(zz*)"], ["optimizer=glob(zz*): matches none of the optimizer options: adam, adamw, sgd"]),
    (["-m", "optimizer.lr=glob(*)"], ["glob() sweeps a config group's options, and optimizer.lr is no group"]),
    (["-m", "optimizer.lr=range(5,1)"], ["optimizer.lr=range(5,1): gives no values, so the sweep would run no jobs"]),
    (["-m", "optimizer.lr=interval(0.1,0.2)"], ["interval() is a range for a search", "optimizer.lr=range("]),
    (["-m", "hparams_search=digits_optuna", "trainer.monitor=val/loss"],
     ["hydra.sweeper.direction=maximize, but trainer.monitor=val/loss is better lower", "direction=minimize"]),
    (["data=cifar10", "data.root=missing_dir"], ["CIFAR10 not found", "data_batch_1", "data.download=true"]),
    (["nonsense"], ["bad override"]),
    (["+experiment=digits_simplecnn"], ["+experiment=digits_simplecnn: the config's defaults already choose experiment",
                                        "without the +: experiment=digits_simplecnn"]),
    (["-m", "+optimizer=sgd,adam"], ["+optimizer=sgd,adam: the config's defaults already choose optimizer"]),
    (["hydra.job.chdir=true"], ["hydra.job.chdir=true: ftool runs in the folder it starts in"]),
    (["-m", "hydra.job.chdir=true", "optimizer.lr=0.1,0.01"], ["hydra.job.chdir=true: ftool runs in the folder"]),
    (["data=cifar10", "data.root=~/no-cifar-here"], [f"not found under data.root={Path.home()}/no-cifar-here"]),
    # values the libraries refuse when the run builds its parts
    (["optimizer.betas=[0.9,1.5]"], ["optimizer=adam: Invalid beta parameter at index 1: 1.5"]),
    (["model.dropout=1.5"], ["model=simplecnn: dropout probability has to be between 0 and 1"]),
    (["trainer.loss=mse"], ["trainer.loss: mse does not fit classification data; use cross_entropy (or auto)"]),
    # checked before torchrun starts the processes, so it is said once, not by every rank
    (["trainer.devices=2", "trainer.accelerator=mps"], ["trainer.accelerator: mps is not available"]),
    (["trainer.devices=2", "data.batch_size=3"], ["data.batch_size: 3 does not split evenly across 2 processes"]),
])
def test_bad_input_is_one_line_and_a_nonzero_exit(workdir, args, fragments):
    assert_one_line_error(ftool("train", *args, cwd=workdir), *fragments)


def test_a_model_too_large_for_memory_is_one_line_and_a_failed_run(workdir):
    run = workdir / "run"  # 64 inputs x 10^10 hidden units: 2.56 TB of weights, refused at once
    result = ftool("train", "model=mlp", "model.hidden=[10000000000]", f"hydra.run.dir={run}", cwd=workdir)
    assert result.returncode == 1 and result.stderr.startswith("ftool: error: out of memory (2,560.0 GB asked for)")
    assert len(result.stderr.strip().splitlines()) == 1
    assert read_json(run / "summary.json")["error"] == result.stderr.strip().removeprefix("ftool: error: ")


def test_bad_input_never_creates_a_run_dir_before_failing(workdir):
    ftool("train", "optimizer.lr=-1", cwd=workdir)
    assert not (workdir / "outputs").exists()


def test_overrides_are_read_as_a_shell_user_means_them():
    from ftool.cli import shell_like

    assert shell_like("data.root=~/data") == f"data.root='{Path.home()}/data'"  # Hydra takes no ~ in a value
    assert shell_like("hydra.run.dir=runs/训练") == "hydra.run.dir='runs/训练'"  # nor non-ASCII letters unquoted
    assert shell_like("hydra.run.dir=runs/训练 1") == "hydra.run.dir='runs/训练 1'"
    assert shell_like("data.classes=[猫, 狗]") == "data.classes=['猫','狗']"  # each word of a list
    assert shell_like("data.path=a.csv,中文.csv") == "data.path=a.csv,'中文.csv'"  # and of a sweep
    for kept in ("~trainer.seed", "optimizer.lr=0.1,0.01", "+x='a b'", "data.classes='猫'", "x=choice(猫,狗)"):
        assert shell_like(kept) == kept  # Hydra's own syntax stays as it is (quotes, functions: the user's)


def test_settings_that_decide_a_runs_samples_and_inputs_stay_the_runs(workdir):
    # Each was applied without a word: another split_seed or test_fraction scored samples the run had
    # trained on (a higher accuracy), normalize=false gave the model inputs it never saw.
    write_image_folder(workdir / "imgs", per_class=10)
    run = workdir / "run"
    job = ("data=imagefolder", "data.root=imgs", "trainer.epochs=1", "trainer.progress=false")
    assert ftool("train", *job, f"hydra.run.dir={run}", cwd=workdir).returncode == 0
    config = (run / ".hydra" / "config.yaml").read_bytes()
    elsewhere = workdir / "elsewhere"  # the run's relative data.root, named from another folder
    elsewhere.mkdir()
    split = ("the run held out its samples with data.split_seed=0; on its own data other split settings put "
             "samples it trained on into the held-out ones; leave them as the run had them, or score every sample "
             "with split=all")
    assert_one_line_error(ftool("eval", f"ckpt={run}", "data.split_seed=7", cwd=elsewhere), f"data.split_seed=7: {split}")
    assert_one_line_error(ftool("eval", f"ckpt={run}", "data.split_seed=7", f"data.root={workdir / 'imgs'}",
                                cwd=elsewhere), f"data.split_seed=7: {split}")
    assert_one_line_error(ftool("eval", f"ckpt={run}", "data.test_fraction=0.5", cwd=workdir),
                          "data.test_fraction=0.5: the run held out its samples with data.test_fraction=0.2")
    assert ftool("eval", f"ckpt={run}", "data.split_seed=7", "split=all", cwd=workdir).returncode == 0
    assert ftool("eval", f"ckpt={run}", "data.split_seed=0", cwd=workdir).returncode == 0  # as it was
    write_image_folder(workdir / "new", per_class=4)  # other data: its own split is no leak
    assert ftool("eval", f"ckpt={run}", "data.root=new", "data.split_seed=7", cwd=workdir).returncode == 0

    normalize = ("data.normalize=false: the run's model takes its inputs as it trained on them (data.normalize=true); "
                 "leave data.normalize as the run had it")
    assert_one_line_error(ftool("eval", f"ckpt={run}", "data.normalize=false", cwd=workdir), normalize)
    # predict and export read no data: a data setting changed nothing (data.image_size=[4,4] resized nothing)
    for command in (("predict", "input=imgs/cat/0.png"), ("export", f"out={workdir / 'm.safetensors'}")):
        for setting in ("data.normalize=false", "data.image_size=[4,4]"):
            assert_one_line_error(ftool(*command, f"ckpt={run}", setting, cwd=workdir),
                                  f"{setting}: {command[0]} reads its inputs as the run read its data (their size, "
                                  f"classes and scaling are saved with it), so data settings change nothing here")
    assert not (workdir / "m.safetensors").exists()
    # nor do they run in several processes: trainer.devices=2 ran one, without a word
    assert_one_line_error(ftool("eval", f"ckpt={run}", "trainer.devices=2", cwd=workdir),
                          "trainer.devices=2: eval runs in one process, on one device (trainer.accelerator picks it); "
                          "leave trainer.devices out")
    assert_one_line_error(ftool("train", f"trainer.resume={run}", "trainer.epochs=2", "data.val_fraction=0.3",
                                cwd=workdir), "data.val_fraction=0.3: the run held out its samples with "
                          "data.val_fraction=0.1", "a resume keeps the run's splits")
    assert (run / ".hydra" / "config.yaml").read_bytes() == config


def test_eval_and_command_errors(workdir):
    assert_one_line_error(ftool("eval", "ckpt=no/such/run", cwd=workdir), "ckpt: no/such/run does not exist")
    assert_one_line_error(ftool("eval", cwd=workdir), "eval needs ckpt=... (eval: evaluate a run's checkpoint: "
                          "ckpt=<run dir|file> [split=test|val|train|all])")
    assert_one_line_error(ftool("eval", "runs/mr", cwd=workdir), "eval needs ckpt=...; 'runs/mr' has no key: ckpt=runs/mr?")
    assert_one_line_error(ftool("trian", cwd=workdir), "unknown command 'trian'", "Did you mean 'train'?")
    assert_one_line_error(ftool("eval", "-m", "ckpt=runs/mr", "data.eval_batch_size=16,32", cwd=workdir),
                          "eval -m: sweeps are for training; eval takes one run: run it once per setting")
    assert not (workdir / "multirun").exists()
    (workdir / "empty").mkdir()
    assert_one_line_error(ftool("eval", f"ckpt={workdir / 'empty'}", cwd=workdir), "holds no checkpoint: expected "
                          "checkpoints/best.safetensors or checkpoints/last.safetensors; is it an ftool run directory?")
    (workdir / "hf").mkdir()
    (workdir / "hf" / "config.json").write_text("{}")  # a Hugging Face model's folder (an export's hf/)
    assert_one_line_error(ftool("finetune", f"finetune.from={workdir / 'hf'}", cwd=workdir),
                          f"finetune.from: {workdir / 'hf'} holds no checkpoint: it is a Hugging Face model's folder, "
                          f"which model=hf_classifier model.name_or_path={workdir / 'hf'} loads")
    ftool("train", "data=mnist", "data.root=nowhere", "hydra.run.dir=failed", cwd=workdir)
    assert_one_line_error(ftool("predict", "ckpt=failed", "input=x", cwd=workdir), "holds no checkpoint: the run "
                          "failed before it saved one (data: MNIST not found")
    for job in ("0", "1"):  # a sweep's folder: its jobs are the runs
        (workdir / "sweep" / job).mkdir(parents=True)
        (workdir / "sweep" / job / "summary.json").write_text('{"status": "completed"}')
    assert_one_line_error(ftool("eval", "ckpt=sweep", cwd=workdir),
                          f"ckpt: {workdir / 'sweep'} is a sweep of 2 jobs; give one of them, such as "
                          f"{workdir / 'sweep' / '0'} (`ftool report sweep` ranks them)")


def test_a_new_run_never_writes_into_another_runs_directory(workdir):
    run = workdir / "运行 [a] 1"  # non-ASCII and a space: quoted for Hydra, and ftool quotes it for eval
    fast = ("trainer.epochs=1", "trainer.progress=false")
    trained = ftool("train", *fast, f"hydra.run.dir='{run}'", cwd=workdir)
    assert f"run directory: {run}\n" in trained.stdout  # its `[a]`, shown as it is (rich read it as a style)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert_one_line_error(ftool("train", *fast, f"hydra.run.dir='{run}'", cwd=workdir),
                          f"hydra.run.dir: {run} already holds a run with checkpoints",
                          "trainer.resume=auto continues it")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # its config too
    assert f"checkpoint: {run / 'checkpoints' / 'best.safetensors'}\n" in ftool("eval", f"ckpt={run}", cwd=workdir).stdout
    assert f"report written to {run / 'report'}\n" in ftool("report", str(run), cwd=workdir).stdout

    # A timestamped dir that another run took in the same second: this run gets its own.
    stamped = ("hydra.run.dir=outputs/${now:%Y}", *fast)
    first, second = ftool("train", *stamped, cwd=workdir), ftool("train", *stamped, cwd=workdir)
    year = time.strftime("%Y")
    assert f"run directory: {workdir / 'outputs' / year}\n" in first.stdout
    assert f"run directory: {workdir / 'outputs' / year}-2\n" in second.stdout

    sweep = ("train", "-m", "optimizer.lr=0.01,0.001", *fast,
             f"hydra.sweep.dir={workdir / '扫描'}")  # non-ASCII: ftool quotes it for Hydra
    assert ftool(*sweep, cwd=workdir).returncode == 0
    assert_one_line_error(ftool(*sweep, cwd=workdir), "already holds 2 runs with checkpoints")


def test_an_output_directory_that_cannot_be_made_is_one_line(workdir):
    (workdir / "a_file").write_text("")
    assert_one_line_error(ftool("train", "hydra.run.dir=a_file/run", cwd=workdir),
                          "hydra.run.dir: cannot make a_file/run (Not a directory)")
    assert_one_line_error(ftool("train", "hydra.run.dir=a_file/${now:%Y}", cwd=workdir),  # the timestamped kind
                          f"hydra.run.dir: cannot make a_file/{time.strftime('%Y')}")


def test_a_path_given_empty_is_one_line_not_the_current_folder(workdir):
    """`ckpt=$RUN` with RUN unset: ckpt= read the current folder (here: "a sweep of N jobs"), data.root=
    searched it for images, and `finetune.from=` fine-tuned from nothing, without a word."""
    for key, args in (("ckpt", ("eval", "ckpt=")), ("input", ("predict", "ckpt=run", "input=")),
                      ("finetune.from", ("train", "finetune.from=")), ("finetune.from", ("finetune", "finetune.from=''")),
                      ("trainer.resume", ("train", "trainer.resume=")),
                      ("data.root", ("train", "data=imagefolder", "data.root=")),
                      ("data.root", ("train", "-m", "data=imagefolder", "data.root="))):
        assert_one_line_error(ftool(*args, cwd=workdir), f"{key}= is empty (a shell variable that is not set?); give a path")
    assert not (workdir / "outputs").exists() and not (workdir / "multirun").exists()


def test_a_failure_during_the_run_is_recorded_in_summary(workdir):
    (workdir / "no_classes").mkdir()
    run = workdir / "run"
    result = ftool("train", "data=imagefolder", f"data.root={workdir / 'no_classes'}", f"hydra.run.dir={run}",
                   cwd=workdir)
    assert_one_line_error(result, "data.root:")
    summary = read_json(run / "summary.json")
    assert summary["status"] == "failed" and summary["error"].startswith("data.root:")


def test_a_reader_that_goes_away_neither_fails_a_run_nor_prints_a_traceback(workdir):
    from PIL import Image

    def closed_at_once(*args):  # `ftool ... | head -0`: the reader is gone before the first line
        proc = subprocess.Popen([sys.executable, "-m", "ftool", *args], cwd=workdir, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        proc.stdout.close()
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "Traceback" not in stderr, stderr
        return proc

    run = workdir / "run"
    closed_at_once("train", "trainer.epochs=3", f"hydra.run.dir={run}")
    summary = read_json(run / "summary.json")
    assert summary["status"] == "completed" and summary["timing"]["epochs"] == 3
    Image.new("L", (8, 8), 255).save(workdir / "digit.png")
    closed_at_once("predict", f"ckpt={run}", "input=digit.png", "output=json")


def test_debug_flag_shows_the_traceback(workdir):
    result = ftool("train", "optimizer.lr=-1", "--debug", cwd=workdir)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_cfg_job_prints_the_composed_config(workdir):
    result = ftool("train", "model=convnet", "trainer.devices=2", "--cfg", "job", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "name: convnet" in result.stdout and "epochs: 20" in result.stdout and "devices: 2" in result.stdout
    assert "starting 2 processes" not in result.stderr  # printing the config starts no training processes
    assert not (workdir / "outputs").exists()


def test_user_components_register_from_their_own_module_and_config_dir(workdir):
    (workdir / "my_models.py").write_text(
        "import math\nfrom torch import nn\nfrom ftool.registry import MODELS\n\n"
        "@MODELS.register('tiny')\n"
        "def tiny(input_shape, num_outputs, width: int = 16):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU(),\n"
        "                         nn.Linear(width, num_outputs))\n")
    (workdir / "conf" / "model").mkdir(parents=True)
    (workdir / "conf" / "model" / "tiny.yaml").write_text("name: tiny\ninit: default\nwidth: 8\n")
    run = workdir / "run"
    result = ftool("train", "--config-dir", "conf", "model=tiny", "imports=[my_models]", "trainer.epochs=1",
                   f"hydra.run.dir={run}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert read_json(run / "summary.json")["parameters"] == 64 * 8 + 8 + 8 * 10 + 10
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    result = ftool("eval", f"ckpt={run}", cwd=elsewhere)  # my_models imports from the folder the run ran in
    assert result.returncode == 0, result.stderr
    assert_one_line_error(ftool("train", "--config-dir", "conf", "model=tiny", "imports=[my_models]",
                                "model.widht=3", cwd=workdir), "Did you mean 'width'?")
    (workdir / "conf" / "model" / "tiny.yaml").write_text("name: tiny\nwidth: [8\n")  # not YAML
    assert_one_line_error(ftool("train", "--config-dir", "conf", "model=tiny", "imports=[my_models]", cwd=workdir),
                          "config: while parsing a flow sequence", "tiny.yaml")


def test_a_dataset_of_ones_own_as_people_write_one_trains_and_a_model_that_does_not_fit_it_is_one_line(workdir):
    """`TensorDataset(x, y)` with y of shape (n,), as most people write one: the regression used to
    train to predicting the mean (test R2 about 0, a torch UserWarning the only sign); rows of float64
    NumPy arrays were torch's "mat1 and mat2 must have the same dtype"."""
    (workdir / "mine.py").write_text(
        "import torch\nfrom torch import nn\nfrom torch.utils.data import TensorDataset\n"
        "from ftool.data import DataInfo, Splits\nfrom ftool.registry import DATASETS, MODELS\n\n"
        "@DATASETS.register('line')\n"
        "def line(kind: str = 'numbers'):\n"
        "    x = torch.randn(400, 3, generator=torch.Generator().manual_seed(0))\n"
        "    y = x @ torch.tensor([1.0, -2.0, 0.5])\n"
        "    if kind != 'numbers':  # rows of float64 NumPy numbers, as scikit-learn gives them; classes 0, 1 or 1, 2\n"
        "        rows = list(zip(x.double().numpy(), ((y > 0).long() + (kind == 'from_1')).tolist()))\n"
        "        return Splits(rows, DataInfo('classification', (3,), 2, ['no', 'yes']))\n"
        "    return Splits(TensorDataset(x, y), DataInfo('regression', (3,), 1))\n\n"
        "@MODELS.register('pair')\n"
        "def pair(input_shape, num_outputs):\n"
        "    class Pair(nn.Linear):\n"
        "        def forward(self, x):\n"
        "            return super().forward(x), x\n"
        "    return Pair(input_shape[0], num_outputs)\n")
    for group, name, body in (("data", "line", "name: line\nkind: numbers\n"), ("model", "pair", "name: pair\n")):
        (workdir / "conf" / group).mkdir(parents=True, exist_ok=True)
        (workdir / "conf" / group / f"{name}.yaml").write_text(body)
    mine = ("--config-dir", "conf", "imports=[mine]", "data=line")
    result = ftool("train", *mine, "model=linear", "optimizer=sgd", "optimizer.lr=0.1", "trainer.epochs=10",
                   f"hydra.run.dir={workdir / 'run'}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "UserWarning" not in result.stderr
    assert read_json(workdir / "run" / "summary.json")["metrics"]["test/r2"] > 0.99
    result = ftool("train", *mine, "model=mlp", "data.kind=classes", f"hydra.run.dir={workdir / 'rows'}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert read_json(workdir / "rows" / "summary.json")["metrics"]["test/accuracy"] > 0.9
    assert_one_line_error(ftool("train", *mine, "model=mlp", "data.kind=from_1", cwd=workdir),
                          "data=line: a sample's class is 2; the data has 2 classes, 0 to 1 (0: no, 1: yes)")
    result = ftool("train", *mine, "model=pair", f"hydra.run.dir={workdir / 'pair'}", cwd=workdir)
    assert_one_line_error(result, "model: returned a tuple for a batch of 64; the data has 1 target, so a model "
                                  "returns one tensor of shape (batch, 1)")
    assert read_json(workdir / "pair" / "summary.json")["status"] == "failed"
    assert_one_line_error(ftool("train", *mine, "model=pair", "model.init=kaiming", cwd=workdir),  # (pair.yaml: a name)
                          "model.init: no such key; model has name. Every model takes it: add `init: default` to "
                          "model=pair's config to set it here.")
    assert_one_line_error(ftool("train", *mine, "data.batch_size=8", cwd=workdir),  # (line.yaml has no defaults)
                          "data.batch_size: no such key; data has name, kind. Every dataset's config has the loader "
                          "settings (batch_size among them) through its first line `defaults: [/data_loader@_here_, "
                          "_self_]`, as ftool's own do: add it to data=line's.")


def test_a_loss_optimizer_and_schedule_of_your_own_train_and_a_loss_evaluates(workdir):
    """trainer.loss took only ftool's five losses: a focal loss, say, meant editing ftool."""
    (workdir / "my_losses.py").write_text(
        "import torch\nfrom ftool.registry import LOSSES, OPTIMIZERS, SCHEDULERS\n\n"
        "@LOSSES.register('seven')\n"
        "def seven(info):\n"
        "    assert info.num_outputs == 10  # (the data's description, for a loss that needs it)\n"
        "    return lambda outputs, targets: (outputs * 0).sum() + 7.0\n\n"
        "@OPTIMIZERS.register('rmsprop')\n"
        "def rmsprop(params, lr, weight_decay, alpha: float = 0.99):\n"
        "    return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay, alpha=alpha)\n\n"
        "@SCHEDULERS.register('halved')\n"
        "def halved(total_steps, steps_per_epoch):\n"
        "    return lambda step: 0.5\n")
    for group, text in (("optimizer", "name: rmsprop\nlr: 0.01\nweight_decay: 0.0\nalpha: 0.9\n"),
                        ("scheduler", "name: halved\nwarmup_epochs: 0\n")):
        (workdir / "conf" / group).mkdir(parents=True)
        (workdir / "conf" / group / f"{text.split()[1]}.yaml").write_text(text)
    run = workdir / "run"
    result = ftool("train", "--config-dir", "conf", "imports=[my_losses]", "trainer.loss=seven", "optimizer=rmsprop",
                   "scheduler=halved", "trainer.epochs=1", "trainer.progress=false", f"hydra.run.dir={run}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    validated = [r for r in read_jsonl(run / "metrics.jsonl") if "val/loss" in r]
    assert read_json(run / "summary.json")["metrics"]["test/loss"] == 7.0 and validated[-1]["val/loss"] == 7.0
    assert {r["lr"] for r in read_jsonl(run / "metrics.jsonl") if "lr" in r} == {0.005}
    assert "name: rmsprop" in (run / ".hydra" / "config.yaml").read_text()
    assert f"checkpoint: {run / 'checkpoints' / 'best.safetensors'}\n" in ftool("eval", f"ckpt={run}", cwd=workdir).stdout
    assert f"report written to {run / 'report'}\n" in ftool("report", str(run), cwd=workdir).stdout
    assert read_json(run / "eval.json")["metrics"]["test/loss"] == 7.0
    assert_one_line_error(ftool("train", "imports=[my_losses]", "trainer.loss=sevne", cwd=workdir),
                          "trainer.loss: must be auto, cross_entropy, mse, l1, huber or seven, got 'sevne'. "
                          "Did you mean 'seven'? A loss of your own")
    assert_one_line_error(ftool("train", "trainer.loss=seven", cwd=workdir),
                          "got 'seven'.", "A loss of your own registers in ftool.registry.LOSSES, from a module named "
                          "in imports=[...].")
    assert_one_line_error(ftool("train", "imports=[my_losses]", "trainer.loss=seven", "trainer.label_smoothing=0.1",
                                cwd=workdir),
                          "trainer.label_smoothing: a setting of ftool's cross-entropy; trainer.loss=seven is a loss "
                          "of your own, which does it itself if it should")


def test_a_primary_config_of_your_own_is_the_one_checked(workdir):
    """--config-name was checked as ftool's own config: `model.hidden=[16]` with a config choosing mlp was
    refused as simplecnn's setting, and a name with no file was Hydra's error and its search path."""
    (workdir / "conf").mkdir()
    (workdir / "conf" / "mine.yaml").write_text("defaults:\n  - config\n  - override model: mlp\n  - _self_\n"
                                                 "trainer:\n  epochs: 1\n  progress: false\n")
    result = ftool("train", "--config-dir", "conf", "--config-name", "mine", "model.hidden=[16]",
                   f"hydra.run.dir={workdir / 'run'}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    config = (workdir / "run" / ".hydra" / "config.yaml").read_text()
    assert "name: mlp" in config and "hidden:\n  - 16" in config and "epochs: 1" in config
    result = ftool("train", "--config-dir", "conf", "--config-name", "mine", "trainer.epochs=2",  # the command again
                   f"trainer.resume={workdir / 'run'}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert read_json(workdir / "run" / "summary.json")["timing"]["epochs"] == 2
    assert_one_line_error(ftool("train", "--config-dir", "conf", "-cn", "mine", "model.hidden=[0]", cwd=workdir),
                          "model.hidden: mlp's layer sizes must be whole numbers >= 1, got [0]")
    # the flags written with `=`, as argparse also takes them (ftool's default config was checked instead)
    for flags in (("--config-dir=conf", "--config-name=mine"), ("-cd=conf", "-cn=mine")):
        assert_one_line_error(ftool("train", *flags, "model.hidden=[0]", cwd=workdir),
                              "model.hidden: mlp's layer sizes must be whole numbers >= 1, got [0]")
    assert_one_line_error(ftool("train", "--config-dir", "conf", "-cn", "mien", cwd=workdir),
                          f"--config-name: no mien.yaml in the --config-dir folders ({workdir / 'conf'}); the configs "
                          f"there: config, mine")


def test_an_experiment_of_your_own_without_its_package_line_says_to_add_it(workdir):
    """Hydra put such a file's keys under `experiment.`: "experiment: unknown config key", or with a
    defaults list "Could not override 'model@experiment.model'. Did you mean to override model?"."""
    (workdir / "conf" / "experiment").mkdir(parents=True)
    (workdir / "conf" / "experiment" / "mine.yaml").write_text("optimizer: {lr: 0.01}\ntrainer: {epochs: 1}\n")
    (workdir / "conf" / "experiment" / "wide.yaml").write_text("defaults:\n  - override /model: mlp\n")
    for name in ("mine", "wide"):
        assert_one_line_error(ftool("train", "--config-dir", "conf", f"experiment={name}", cwd=workdir),
                              f"experiment: experiment/{name}.yaml sets keys under 'experiment.', not the config's "
                              f"own; its first line must be '# @package _global_', as in ftool's configs/experiment/*.yaml")
    (workdir / "conf" / "experiment" / "mine.yaml").write_text("# @package _global_\noptimizer: {lr: 0.01}\n"
                                                               "trainer: {epochs: 1}\n")
    result = ftool("train", "--config-dir", "conf", "experiment=mine", "hydra.run.dir=run", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert read_json(workdir / "run" / "summary.json")["timing"]["epochs"] == 1


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])  # Ctrl-C; a cluster's preemption
def test_a_signal_saves_a_checkpoint_and_marks_the_run_interrupted(workdir, signum):
    run = workdir / "run"
    proc = subprocess.Popen([sys.executable, "-m", "ftool", "train", "data=synthetic", "trainer.epochs=1000",
                             f"hydra.run.dir={run}"], cwd=workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().strip()):
        time.sleep(0.2)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "checkpoint saved" in stderr
    summary = read_json(run / "summary.json")
    assert summary["status"] == "interrupted"
    from ftool.engine import checkpoint

    state = checkpoint.load_state(run / "checkpoints" / "last.state.pt")
    assert state["step"] >= 1
    tensors, meta = checkpoint.load_weights(run / "checkpoints" / "last.safetensors")
    assert int(meta["step"]) == state["step"] and "features.0.weight" in tensors


def test_ctrl_c_outside_the_training_loop_is_one_line_and_marks_a_started_run_interrupted(workdir):
    # Ctrl-C raises KeyboardInterrupt wherever Python is: here while ftool imports the user's modules
    # (starting up), and while the run builds its model (before the loop's own handler saves a checkpoint).
    (workdir / "ctrl_c_on_import.py").write_text("raise KeyboardInterrupt\n")
    (workdir / "ctrl_c_on_build.py").write_text(
        "from ftool.registry import MODELS\n\n"
        "@MODELS.register('ctrl_c')\n"
        "def ctrl_c(input_shape, num_outputs):\n"
        "    raise KeyboardInterrupt\n")
    starting = ftool("train", "imports=[ctrl_c_on_import]", cwd=workdir)
    assert (starting.returncode, starting.stderr) == (130, "ftool: interrupted\n")
    run = workdir / "run"
    (workdir / "conf" / "model").mkdir(parents=True)
    (workdir / "conf" / "model" / "ctrl_c.yaml").write_text("name: ctrl_c\ninit: default\n")
    building = ftool("train", "--config-dir", "conf", "model=ctrl_c", "imports=[ctrl_c_on_build]",
                     f"hydra.run.dir={run}", cwd=workdir)
    assert building.returncode == 130 and building.stderr.endswith("ftool: interrupted\n"), building.stderr
    assert "Traceback" not in building.stderr
    assert read_json(run / "summary.json")["status"] == "interrupted"


def test_python_dash_m_and_console_script_agree(workdir):
    result = ftool("--version", cwd=workdir)
    assert result.returncode == 0 and result.stdout.startswith("ftool ")
    script = Path(sys.executable).parent / "ftool"
    if script.exists():  # the console script of the installed package
        assert subprocess.run([str(script), "--version"], capture_output=True, text=True).stdout == result.stdout


def test_a_warmup_as_long_as_the_run_is_a_warning(workdir):
    # Digits: 41 steps per epoch, so a whole epoch of warmup outlasts 5 steps. (A run without warmup
    # gets no warning: test_default_train_then_eval_reproduces_the_test_metrics.)
    too_long = ftool("train", "trainer.max_steps=5", "trainer.validate=false", "trainer.progress=false",
                     "scheduler.warmup_epochs=1", f"hydra.run.dir={workdir / 'run'}", cwd=workdir)
    assert too_long.returncode == 0
    assert ("warning: scheduler.warmup_epochs=1.0 is 41 steps, the run 5: the learning rate is still rising"
            in too_long.stderr)  # (on stderr, as every warning: stdout may be a JSON or CSV being read)


def test_a_full_disk_is_one_line_and_recorded(workdir):
    import resource

    def small_files_only():  # as a full disk would: writes past 20 kB fail (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    run = workdir / "run"
    result = subprocess.run([sys.executable, "-m", "ftool", "train", "trainer.progress=false", f"hydra.run.dir={run}"],
                            cwd=workdir, capture_output=True, text=True, timeout=300, preexec_fn=small_files_only)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"ftool: error: File too large: {run / 'checkpoints' / 'best.safetensors'}"
    summary = read_json(run / "summary.json")
    assert summary["status"] == "failed"
    assert summary["error"] == f"File too large: {run / 'checkpoints' / 'best.safetensors'}"  # in the CLI's words
    assert list((run / "checkpoints").iterdir()) == []  # no half-written weights, no temporary files
