"""The shipped experiment configs: each composes and validates; the offline one runs."""

import pytest
from hydra import compose, initialize_config_dir

from ftool.cli import config_groups, config_root
from ftool.config import validate
from tests.conftest import ftool, read_json

EXPECTED = {  # experiment -> (model, data, optimizer)
    "cifar10_simplecnn": ("simplecnn", "cifar10", "adam"),
    "cifar10_convnet": ("convnet", "cifar10", "adam"),
    "mnist_mlp": ("mlp", "mnist", "adam"),
    "regression_linear": ("linear", "regression", "sgd"),
    "digits_simplecnn": ("simplecnn", "digits", "adam"),
    "digits_transfer": ("simplecnn", "digits", "adam"),
}


@pytest.mark.parametrize("name", sorted(config_groups(config_root())["experiment"]))
def test_each_experiment_composes_into_a_valid_config(name):
    with initialize_config_dir(str(config_root()), version_base="1.3"):
        rc = validate(compose("config", overrides=[f"experiment={name}"]))
    assert (rc.model.name, rc.data.name, rc.optimizer.name) == EXPECTED[name]


def test_the_linear_regression_seed_runs_offline(workdir):
    run = workdir / "run"
    result = ftool("train", "experiment=regression_linear", "trainer.epochs=20", f"hydra.run.dir={run}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert read_json(run / "summary.json")["metrics"]["test/r2"] > 0.9
