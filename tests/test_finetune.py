"""`ftool finetune` from an ftool run: the seed's pretrained CNN on new classes."""

import shutil

import pytest
import torch
from torch import nn
from safetensors.torch import load_file

from ftool.config import FinetuneConfig
from ftool.errors import FtoolError
from ftool.finetune import freeze, lr_multipliers, output_layer
from ftool.models.cnn import SimpleCNN
from tests.conftest import assert_one_line_error, ftool, read_json


def test_digits_transfer_keeps_the_frozen_convs_and_learns_new_classes(workdir):
    pre, tuned = workdir / "pre", workdir / "tuned"
    result = ftool("train", "data.classes=[0,1,2,3,4]", "trainer.epochs=5", "trainer.progress=false",
                   f"hydra.run.dir={pre}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert read_json(pre / "summary.json")["data"]["class_names"] == ["0", "1", "2", "3", "4"]

    result = ftool("finetune", "experiment=digits_transfer", f"finetune.from={pre}", "trainer.epochs=5",
                   "trainer.progress=false", f"hydra.run.dir={tuned}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    summary = read_json(tuned / "summary.json")
    assert summary["command"] == "finetune" and summary["data"]["class_names"] == ["5", "6", "7", "8", "9"]
    assert summary["finetune"]["frozen"] == ["features.0.weight", "features.0.bias"]
    assert summary["metrics"]["test/accuracy"] > 0.85
    before, after = load_file(pre / "checkpoints" / "best.safetensors"), load_file(tuned / "checkpoints" / "best.safetensors")
    assert torch.equal(before["features.0.weight"], after["features.0.weight"])  # frozen
    assert not torch.equal(before["head.1.weight"], after["head.1.weight"])  # fine-tuned

    result = ftool("eval", f"ckpt={tuned}", cwd=workdir)  # eval works on a finetune run as on a train run
    assert result.returncode == 0, result.stderr
    assert read_json(tuned / "eval.json")["metrics"]["test/accuracy"] == summary["metrics"]["test/accuracy"]

    assert_one_line_error(ftool("finetune", f"finetune.from={pre}", "model=mlp", cwd=workdir),  # another model
                          "finetune.from: no layer of", "fits this model (that run trained model=simplecnn;")

    # The source's training samples are not held out as unseen: on its classes, its split settings...
    assert_one_line_error(ftool("finetune", f"finetune.from={pre}", "data.classes=[0,1,2,3,4]", "data.split_seed=1",
                                cwd=workdir),
                          f"data.split_seed=1: finetune.from {pre} trained on this data, holding out samples with "
                          f"data.split_seed=0; other split settings put samples it trained on into this run's held-out")
    quick = ("trainer.max_steps=1", "trainer.progress=false")  # ...other classes split as they like
    other = ftool("finetune", "experiment=digits_transfer", f"finetune.from={pre}", "data.split_seed=1", *quick,
                  f"hydra.run.dir={workdir / 'other'}", cwd=workdir)
    assert other.returncode == 0 and "warning" not in other.stderr, other.stderr
    more = ftool("finetune", f"finetune.from={pre}", *quick, f"hydra.run.dir={workdir / 'more'}", cwd=workdir)
    assert more.returncode == 0 and (f"warning: finetune.from {pre} trained on classes 0, 1, 2, 3, 4 of this data; "
                                     f"split with other classes, this run holds out other samples") in more.stderr

    # A resume needs its checkpoint only: the pretrained run may be gone ("finetune.from: ... does not
    # exist" before), and the frozen layers stay frozen (the checkpoint names those that were pretrained).
    pre.rename(workdir / "moved")
    result = ftool("finetune", f"trainer.resume={tuned}", "trainer.epochs=6", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "tensors from" not in result.stdout  # no pretrained weights loaded, to be replaced at once
    resumed = read_json(tuned / "summary.json")
    assert resumed["resumed_from_step"] > 0 and resumed["timing"]["epochs"] == 6
    assert resumed["finetune"]["frozen"] == summary["finetune"]["frozen"]
    assert resumed["finetune"]["pretrained_parameters"] == summary["finetune"]["pretrained_parameters"]
    assert torch.equal(before["features.0.weight"], load_file(tuned / "checkpoints" / "last.safetensors")["features.0.weight"])


def test_backbone_freezing_freezes_the_pretrained_layers_and_needs_some():
    model = SimpleCNN((1, 8, 8), 3, padding=2)
    assert output_layer(model) == "head.4"
    with pytest.raises(FtoolError, match="nothing in this model is pretrained"):
        freeze(model, FinetuneConfig(freeze=["features"]), pretrained=set())
    with pytest.raises(FtoolError, match="finetune.unfreeze_at_epoch: nothing is frozen to unfreeze"):
        freeze(model, FinetuneConfig(unfreeze_at_epoch=2), pretrained=set())
    with pytest.raises(FtoolError, match="finetune.backbone_lr_mult: nothing in this model is pretrained"):
        lr_multipliers(model, set(), FinetuneConfig(backbone_lr_mult=0.1))  # it would slow no parameter down
    with pytest.raises(FtoolError, match=r"\['feature'\] match no parameter; the model's blocks are features, head$"):
        freeze(model, FinetuneConfig(freeze=["feature"]), pretrained={"features.0.weight"})
    wrapped = nn.Module()  # as a Hugging Face classifier is: hf around hf.bert and hf.classifier
    wrapped.hf = nn.Module()
    wrapped.hf.bert, wrapped.hf.classifier = nn.Sequential(nn.Linear(2, 2)), nn.Linear(2, 2)
    with pytest.raises(FtoolError, match="the model's blocks are hf.bert, hf.classifier$"):
        freeze(wrapped, FinetuneConfig(freeze=["bert"]), pretrained={"hf.bert.0.weight"})
    with pytest.raises(FtoolError, match="the model's blocks are bias, weight$"):
        freeze(nn.Linear(2, 2), FinetuneConfig(freeze=["fc"]), pretrained={"weight"})
    loaded = {"features.0.weight", "features.0.bias", "head.1.weight", "head.1.bias"}  # all but the output layer
    frozen = freeze(model, FinetuneConfig(freeze="backbone"), pretrained=loaded)
    assert frozen == ["features.0.weight", "features.0.bias", "head.1.weight", "head.1.bias"]
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.4.weight", "head.4.bias"]


def test_finetune_errors_are_one_line(workdir):
    assert_one_line_error(ftool("finetune", cwd=workdir), "finetune: simplecnn starts from nothing pretrained",
                          "finetune.from=")
    assert_one_line_error(ftool("finetune", f"finetune.from={workdir}/none", cwd=workdir),
                          "finetune.from:", "does not exist")
    assert_one_line_error(ftool("train", "data.classes=[3,42]", cwd=workdir), "data.classes: no class 42")
    assert_one_line_error(ftool("train", "experiment=digits_transfer", cwd=workdir),  # finetune.from forgotten
                          "finetune.freeze: nothing in this model is pretrained")


def test_pretrained_layers_get_their_own_learning_rate():
    from ftool.optim import decay_groups

    model = SimpleCNN((1, 8, 8), 3, padding=2)
    pretrained = {n for n, _ in model.named_parameters() if not n.startswith("head.4.")}
    groups = decay_groups(model, 0.01, lr=1e-3, lr_mult={n: 0.1 for n in pretrained})
    by_lr = {(g["lr"], g["weight_decay"]): sum(p.numel() for p in g["params"]) for g in groups}
    head = model.head[4]
    assert by_lr[(1e-3, 0.01)] == head.weight.numel() and by_lr[(1e-3, 0.0)] == head.bias.numel()
    assert by_lr[(1e-3 * 0.1, 0.01)] + by_lr[(1e-3 * 0.1, 0.0)] == sum(
        p.numel() for n, p in model.named_parameters() if n in pretrained)


def test_finetune_from_a_weights_file_of_its_own(workdir):
    """A state_dict that a hand-written loop saved, or an ftool export, as finetune.from: both were refused
    (only a file inside an ftool run's checkpoints/ was taken)."""
    torch.manual_seed(0)
    source = SimpleCNN((1, 8, 8), 10).state_dict()
    as_a_script_saves = {"epoch": 3, "model_state_dict": {f"module.{k}": v for k, v in source.items()},  # (DDP's)
                         "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 0.1}]}}
    torch.save(as_a_script_saves, workdir / "mine.pth")
    result = ftool("finetune", "finetune.from=mine.pth", "finetune.freeze=backbone", "trainer.epochs=1",
                   "trainer.progress=false", "hydra.run.dir=tuned", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "finetune: 4 tensors from mine.pth; fresh: head.4.weight, head.4.bias" in result.stdout
    tuned = load_file(workdir / "tuned" / "checkpoints" / "best.safetensors")
    assert all(torch.equal(tuned[k], source[k]) for k in source if not k.startswith("head.4."))  # loaded, frozen
    assert read_json(workdir / "tuned" / "summary.json")["finetune"]["from"] == "mine.pth"

    exported = ftool("export", "ckpt=tuned", "out=model.safetensors", cwd=workdir)  # a run's export, without its run
    assert exported.returncode == 0, exported.stderr
    again = ftool("finetune", "finetune.from=model.safetensors", "trainer.max_steps=1", "trainer.progress=false",
                  "hydra.run.dir=again", cwd=workdir)
    assert again.returncode == 0 and "finetune: 4 tensors from model.safetensors" in again.stdout, again.stderr

    assert_one_line_error(ftool("finetune", "finetune.from=mine.pth", "model=mlp", cwd=workdir),
                          "finetune.from: no layer of mine.pth fits this model by name and shape (it has "
                          "features.0.weight, features.0.bias, head.1.weight and 3 more; the model has net.1.weight")
    (workdir / "hf").mkdir()  # a Hugging Face model folder's weights: named as the folder loads them
    (workdir / "hf" / "config.json").write_text("{}")
    shutil.copy(workdir / "model.safetensors", workdir / "hf" / "model.safetensors")
    assert_one_line_error(ftool("finetune", "finetune.from=hf/model.safetensors", "model=mlp", cwd=workdir),
                          "finetune.from: hf/model.safetensors is a Hugging Face model folder's weights; start from "
                          "the folder with model=hf_classifier model.name_or_path=hf")
    torch.save(torch.nn.Linear(2, 2), workdir / "whole.pt")  # a pickled module: loading it could run code
    assert_one_line_error(ftool("finetune", "finetune.from=whole.pt", cwd=workdir),
                          "finetune.from: whole.pt is no weights file that loads safely: give safetensors or a "
                          "PyTorch file of model.state_dict() (torch.save)")
    torch.save({"epoch": 3, "lr": 0.1}, workdir / "state.pt")
    assert_one_line_error(ftool("finetune", "finetune.from=state.pt", cwd=workdir),
                          "finetune.from: state.pt holds no state_dict (a dict of tensors, alone or under one of the "
                          "keys state_dict, model_state_dict, model, module); save model.state_dict()")
