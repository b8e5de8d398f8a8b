"""Fine-tuning: the seed's pretrained CNN on new classes, frozen layers, their own LR, weights files."""

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import one_line_error, read_json

FAST = ("trainer.progress=false",)


def test_digits_transfer_keeps_the_frozen_convs_and_learns_the_new_classes(cli, tmp_path):
    assert cli("train", "data.classes=[0,1,2,3,4]", "trainer.epochs=2", "hydra.run.dir=runs/0-4", *FAST).code == 0
    result = cli("finetune", "experiment=digits_transfer", "finetune.from=runs/0-4", "trainer.epochs=2",
                 "hydra.run.dir=runs/5-9", *FAST)
    assert result.code == 0, result.err
    before = load_file(tmp_path / "runs/0-4/checkpoints/best.safetensors")
    after = load_file(tmp_path / "runs/5-9/checkpoints/best.safetensors")
    assert torch.equal(before["features.0.weight"], after["features.0.weight"])  # frozen
    assert not torch.equal(before["head.1.weight"], after["head.1.weight"])
    summary = read_json(tmp_path / "runs/5-9/summary.json")
    assert summary["data"]["class_names"] == ["5", "6", "7", "8", "9"] and summary["metrics"]["test/accuracy"] > 0.5
    assert summary["finetune"]["frozen"] == ["features.0.weight", "features.0.bias"]
    result = cli("finetune", "experiment=digits_transfer", "finetune.from=runs/0-4", "trainer.epochs=2",
                 "finetune.unfreeze_at_epoch=2", "hydra.run.dir=runs/unfrozen", *FAST)
    assert "finetune: epoch 2: 2 frozen parameters now train" in result.out, result.err
    unfrozen = load_file(tmp_path / "runs/unfrozen/checkpoints/last.safetensors")
    assert not torch.equal(before["features.0.weight"], unfrozen["features.0.weight"])


def test_pretrained_layers_get_their_own_lr_and_backbone_freezing_needs_some(cli, tmp_path):
    assert cli("train", "trainer.epochs=1", "hydra.run.dir=base", *FAST).code == 0
    result = cli("finetune", "finetune.from=base", "finetune.backbone_lr_mult=0.1", "trainer.epochs=1",
                 "hydra.run.dir=tuned", *FAST)
    assert result.code == 0 and "fresh: head.4.weight, head.4.bias" in result.out
    one_line_error(cli("train", "finetune.freeze=backbone"), "finetune.freeze: nothing in this model is pretrained")
    one_line_error(cli("finetune", "trainer.epochs=1"), "finetune: model=simplecnn starts from nothing pretrained")


def test_finetune_from_a_weights_file_of_ones_own(cli, tmp_path):
    from ftool.registry import MODELS

    model = MODELS.build("simplecnn", {"padding": 2}, input_shape=(1, 8, 8), num_outputs=3)
    torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3}, tmp_path / "mine.pt")
    result = cli("finetune", "finetune.from=mine.pt", "model.padding=2", "trainer.epochs=1", *FAST)
    assert result.code == 0 and "finetune: 4 tensors from mine.pt" in result.out, result.err


def test_pretrained_layers_and_deeper_transformer_layers_get_their_own_lr():
    from types import SimpleNamespace

    from ftool.finetune import lr_multipliers

    model = torch.nn.Module()
    model.embed = torch.nn.Embedding(3, 2)
    model.encoder = torch.nn.Module()
    model.encoder.layer = torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(2)])
    model.head = torch.nn.Linear(2, 2)
    mult = lr_multipliers(model, {"embed.weight"}, SimpleNamespace(backbone_lr_mult=0.1, layer_lr_decay=0.5))
    assert [mult[n] for n in ("embed.weight", "encoder.layer.0.weight", "encoder.layer.1.weight", "head.weight")] \
        == pytest.approx([0.0125, 0.25, 0.5, 1.0])
