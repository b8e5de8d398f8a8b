import pytest
from omegaconf import OmegaConf

from ftool.config import RunConfig, validate
from ftool.errors import FtoolError, one_line


def base(**changes) -> dict:
    cfg = {
        "model": {"name": "simplecnn", "init": "default", "padding": 0},
        "data": {"name": "digits", "batch_size": 32},
        "optimizer": {"name": "adam", "lr": 0.001, "betas": [0.9, 0.999]},
        "scheduler": {"name": "none", "warmup_epochs": 0},
        "trainer": {"epochs": 2},
        "imports": [],
    }
    for dotted, value in changes.items():
        node = cfg
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return cfg


def errors_of(cfg: dict) -> list[str]:
    with pytest.raises(FtoolError) as info:
        validate(OmegaConf.create(cfg))
    return str(info.value).splitlines()


def test_valid_config_becomes_typed_with_builder_arguments_apart():
    rc = validate(OmegaConf.create(base()))
    assert isinstance(rc, RunConfig)
    assert rc.optimizer.lr == 0.001 and rc.optimizer.args == {"betas": [0.9, 0.999]}
    assert rc.model.args == {"padding": 0} and rc.trainer.epochs == 2 and rc.trainer.seed == 0


def test_every_error_is_reported_at_once_with_its_key():
    errors = errors_of(base(optimizer__lr=-1.0, trainer__epochs=-1, model__padding="x", data__batch_size=0,
                            trainer__early_stopping_min_delta=-0.1, finetune__lora__alpha=0, trainer__seed=-1,
                            data__split_seed=2**32))
    assert "optimizer.lr: must be > 0, got -1.0" in errors
    assert "trainer.epochs: must be >= 0, got -1" in errors
    assert "model.padding: must be a whole number, got 'x'" in errors
    assert "data.batch_size: must be >= 1, got 0" in errors
    assert "trainer.early_stopping_min_delta: must be >= 0, got -0.1" in errors
    assert "finetune.lora.alpha: must be > 0 (0 scales the adapters to nothing), got 0.0" in errors
    assert "trainer.seed: must be in [0, 4294967295], got -1" in errors  # (numpy's traceback, after the run started)
    assert "data.split_seed: must be in [0, 4294967295], got 4294967296" in errors
    assert len(errors) == 8


def test_a_choice_not_offered_lists_the_options_and_the_one_meant():
    errors = errors_of(base(trainer__precision="bf16", trainer__accelerator="GPU", trainer__mode="maximize",
                            model__init="xavier_uniform", trainer__on_nonfinite="ignore"))
    assert errors == [
        "trainer.mode: must be max or min, got 'maximize'. Did you mean 'max'?",
        "trainer.accelerator: must be auto, cpu, cuda or mps, got 'GPU'. Did you mean 'cuda'?",  # Lightning's name
        "trainer.precision: must be 32, bf16-mixed, fp16-mixed or auto, got 'bf16'. Did you mean 'bf16-mixed'?",
        "trainer.on_nonfinite: must be stop or skip, got 'ignore'.",  # nothing close: no guess
        "model.init: must be default, kaiming or xavier, got 'xavier_uniform'. Did you mean 'xavier'?"]
    assert errors_of(base(model__init="He")) == [  # the names of the papers
        "model.init: must be default, kaiming or xavier, got 'He'. Did you mean 'kaiming'?"]


def test_wrong_type_and_unknown_key_in_schemas():
    # In the user's words, not OmegaConf's ("Value 'many' of type 'str' could not be converted to Integer",
    # "Invalid value assigned: AnyNode is not a ListConfig, list or tuple").
    assert errors_of(base(trainer__epochs="many")) == ["trainer.epochs: must be a whole number, got 'many'"]
    assert errors_of(base(trainer__validate="maybe")) == ["trainer.validate: must be true or false, got 'maybe'"]
    assert errors_of(base(optimizer__lr="fast")) == ["optimizer.lr: must be a number, got 'fast'"]
    assert errors_of(base(data__classes=5)) == ["data.classes: must be a list ([a,b]) or null, got 5"]
    assert errors_of(base(trainer__monitor=[1])) == ["trainer.monitor: must be text or null, got [1]"]
    assert errors_of(base(data__augment__hflip="maybe")) == ["data.augment.hflip: must be true or false, got 'maybe'"]
    # a section given a value: OmegaConf named no key ("data: Merge error: int is not a subclass of AugmentConfig")
    assert errors_of(base(data__augment=5)) == ["data.augment: must be settings ({key: value}), got 5"]
    assert errors_of(base(finetune__lora="on")) == ["finetune.lora: must be settings ({key: value}), got 'on'"]
    # a key the schema lacks (added with +, as +trainer.epoch=3): as the command line's unknown keys are,
    # not OmegaConf's "Key 'epoch' not in 'TrainerConfig'"
    (error,) = errors_of(base(trainer__epoch=3))
    assert error.startswith("trainer.epoch: no such key; trainer has epochs, max_steps,") and \
        error.endswith("Did you mean 'epochs'?")
    assert errors_of(base(data__augment__hflp=True)) == ["data.augment.hflp: no such key; data.augment has "
                                                         "crop_padding, hflip, rotation. Did you mean 'hflip'?"]
    assert errors_of(base(extra=1)) == ["extra: unknown config key; top-level keys are data, finetune, imports, logger, model, "
                                        "optimizer, scheduler, trainer"]


def test_a_section_that_is_not_settings_is_an_error_not_a_crash():
    assert errors_of(base(data="cifar10", trainer=[3])) == ["trainer: expected trainer settings (key: value), got [3]",
                                                          "data: expected data settings (key: value), got 'cifar10'"]


def test_unknown_component_and_builder_option():
    assert "Did you mean 'convnet'?" in errors_of(base(model={"name": "convnte"}))[0]
    (error,) = errors_of(base(optimizer__momentum=0.9))  # adam has no momentum
    assert error.startswith("optimizer.momentum: not an option of optimizer 'adam'")


def test_imports_register_user_components(tmp_path, monkeypatch):
    (tmp_path / "user_models_for_test.py").write_text(
        "from torch import nn\nfrom ftool.registry import MODELS\n"
        "@MODELS.register('user_linear_for_test')\n"
        "def build(input_shape, num_outputs, scale: float = 1.0):\n"
        "    return nn.Linear(input_shape[0], num_outputs)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = base(imports=["user_models_for_test"], model={"name": "user_linear_for_test", "scale": 2.0})
    assert validate(OmegaConf.create(cfg)).model.args == {"scale": 2.0}
    with pytest.raises(FtoolError, match="imports: cannot import 'no_such_module_x'"):
        validate(OmegaConf.create(base(imports=["no_such_module_x"])))


def test_quoted_exceptions_become_one_short_line():
    assert one_line(RuntimeError("Error downloading x:\n  Tried a, got: refused\n\nTried b")) == \
        "Error downloading x: Tried a, got: refused; Tried b"
    assert one_line(ValueError("bad value\n    full_key: trainer.epochs\n    object_type=dict")) == "bad value"
    assert one_line(KeyboardInterrupt()) == "KeyboardInterrupt"
    long = one_line(RuntimeError("x" * 1000))
    assert len(long) == 300 and long.endswith("...")


def test_the_machines_refusals_are_one_line_and_other_os_errors_stay_bugs():
    import errno

    from ftool.errors import MachineError, machine_errors

    with pytest.raises(MachineError) as full:
        with machine_errors():
            raise OSError(errno.ENOSPC, "No space left on device", "/runs/a/checkpoints/last.state.pt")
    assert str(full.value) == "No space left on device: /runs/a/checkpoints/last.state.pt"
    assert full.value.exit_code == 1
    with pytest.raises(FileNotFoundError):  # not the machine's doing: a traceback, as for any bug
        with machine_errors():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", "x")


def test_running_out_of_memory_is_one_line_saying_what_needs_less():
    import torch

    from ftool.errors import MachineError, machine_errors

    cpu = RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                       "you tried to allocate 2560000000000 bytes. Error code 12 (Cannot allocate memory)")
    gpu = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of "
                                 "79.19 GiB of which 3.06 MiB is free.")
    for error, said in ((cpu, "out of memory (2,560.0 GB asked for); a smaller data.batch_size"),
                        (gpu, "out of memory (CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has")):
        with pytest.raises(MachineError) as caught:
            with machine_errors():
                raise error
        assert str(caught.value).startswith(said) and caught.value.exit_code == 1
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes"):  # any other RuntimeError: a bug's traceback
        with machine_errors():
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")


@pytest.mark.parametrize("overrides,message", [
    # a top-level key: not a group choice, so the keys are listed without the groups' own
    (["foo=1", "model=mlp"], "foo: no such key; the config has optimizer, scheduler, model, data, trainer, logger, "
                             "finetune, imports."),
    (["epochs=3"], "epochs: no such key; the config has optimizer, scheduler, model, data, trainer, logger, "
                   "finetune, imports. Did you mean 'trainer.epochs'?"),  # a key of a group
    (["trainer.lr=0.1"], "trainer.lr: no such key; trainer has epochs, ... Did you mean 'optimizer.lr'?"),  # another's
    # what Lightning's, Hugging Face's and torchtune's users type
    (["max_epochs=3"], "max_epochs: no such key; the config has optimizer, ... Did you mean 'trainer.epochs'?"),
    (["learning_rate=1e-3"], "learning_rate: no such key; the config has optimizer, ... Did you mean 'optimizer.lr'?"),
    (["fp16=true"], "fp16: no such key; the config has optimizer, ... Did you mean 'trainer.precision=fp16-mixed'?"),
    (["trainer.gpus=2"], "trainer.gpus: no such key; trainer has epochs, ... Did you mean 'trainer.devices'?"),
    (["output_dir=runs/a"], "output_dir: no such key; the config has optimizer, ... Did you mean 'hydra.run.dir'?"),
    (["trainer.num_sanity_val_steps=0"], "trainer.num_sanity_val_steps: no such key; trainer has epochs, ... ftool "
                                         "has no such setting."),  # not 'max_steps', the closest name
    (["trainer.limit_train_batches=10"], "trainer.limit_train_batches: no such key; trainer has epochs, ... Did you "
                                         "mean 'trainer.max_steps'?"),  # (not 'accumulate_grad_batches')
    (["lora_rank=8"], "lora_rank: no such key; the config has optimizer, ... Did you mean 'finetune.lora.r'?"),
    (["ckpt=runs/a"], "ckpt: no such key; the config has optimizer, ... Did you mean 'finetune.from'?"),
    # a setting of another option of the group
    (["optimizer.momentum=0.9"], "optimizer.momentum: no such key; optimizer has name, lr, weight_decay, l1, betas, "
                                 "eps. It is a setting of optimizer=sgd."),
    (["model=mlp", "model.gradient_checkpointing=true"],  # (its hint was itself: "Did you mean 'model.gradient_...'")
     "model.gradient_checkpointing: no such key; model has name, init, hidden, dropout. It is a setting of "
     "model=hf_classifier."),
    (["gradient_checkpointing=true"], "gradient_checkpointing: no such key; the config has optimizer, ... Did you mean "
                                      "'model.gradient_checkpointing'?"),
    (["class_weight=balanced"], "class_weight: no such key; the config has optimizer, ... Did you mean "
                                "'trainer.class_weights'?"),
    (["data.root=x"], "data.root: no such key; data has batch_size, ... It is a setting of data=cifar10, cifar100, "
                      "fashion_mnist, imagefolder, mnist or text_files."),
    (["scheduler=cosine", "scheduler.gama=0.5"], "scheduler.gama: no such key; scheduler has name, warmup_epochs, "
                                                 "min_lr_ratio. Did you mean 'gamma'? It is a setting of scheduler=step."),
    (["optimizer.weight_decy=0.1"], "optimizer.weight_decy: no such key; optimizer has name, ... Did you mean "
                                    "'weight_decay'?"),  # its own key first
    (["modle.hidden=[8]"], "modle: no such key; the config has optimizer, ... Did you mean 'model'?"),
    (["trainer.epochs.x=1"], "trainer.epochs.x: no such key; trainer.epochs is a value, not a group of settings"),
])
def test_an_unknown_key_says_which_key_was_meant(overrides, message):
    from ftool.cli import config_root, preflight
    from ftool.commands import COMMANDS

    with pytest.raises(FtoolError) as info:
        preflight(overrides, [], config_root(), COMMANDS["train"])
    start, _, end = message.partition(", ... ")  # "..." stands for the listed keys
    assert str(info.value).startswith(start) and str(info.value).endswith(end or start)
