"""Models sized by the data, metrics against scikit-learn's, optimizers and schedules."""

import math

import numpy as np
import pytest
import torch
from sklearn import metrics as sk
from torch import nn

from ftool.models import adapt_stem
import ftool.optim  # noqa: F401
from ftool.data import DataInfo
from ftool.metrics import EpochMeter, StandardizedLoss, WeightedCrossEntropy, monitor_mode, resolve_class_weights
from ftool.optim import OPTIMIZERS, Plateau, build_scheduler, decay_groups, l1_penalty
from ftool.registry import MODELS


def test_the_seed_models_size_themselves_to_the_data():
    simple = MODELS.build("simplecnn", {}, input_shape=(3, 32, 32), num_outputs=10)
    assert sum(p.numel() for p in simple.parameters()) == 806_666  # the seed's layout, flattened right
    for name, args in (("simplecnn", {}), ("convnet", {}), ("mlp", {}), ("linear", {}),
                       ("torchvision", {"arch": "resnet18"}), ("torchvision", {"arch": "squeezenet1_0"})):
        model = MODELS.build(name, args, input_shape=(1, 28, 28), num_outputs=7, pretrained=False)
        adapt_stem(model, 1)  # (what build_model does for every image model: RGB architectures take grayscale)
        assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 7), name
    assert [m.out_features for m in MODELS.build("mlp", {"hidden": 64}, input_shape=(4,), num_outputs=2).modules()
            if isinstance(m, nn.Linear)] == [64, 2]


def test_classification_metrics_streamed_in_batches_equal_scikit_learns():
    rng = np.random.default_rng(0)
    targets, logits = rng.integers(0, 7, 500), torch.tensor(rng.normal(size=(500, 7)))
    meter = EpochMeter(DataInfo("classification", (3,), 7), torch.device("cpu"))
    for start in range(0, 500, 64):
        meter.update(torch.tensor(1.0), logits[start:start + 64], torch.tensor(targets[start:start + 64]))
    got, predicted = meter.compute("val"), logits.argmax(1).numpy()
    assert got["val/accuracy"] == pytest.approx(sk.accuracy_score(targets, predicted))
    assert got["val/f1"] == pytest.approx(sk.f1_score(targets, predicted, average="macro"))
    assert got["val/top5_accuracy"] == pytest.approx(sk.top_k_accuracy_score(targets, logits.numpy(), k=5))
    per_class = meter.per_class()
    assert per_class["confusion_matrix"] == sk.confusion_matrix(targets, predicted).tolist()
    assert monitor_mode("val/loss", None) == "min" and monitor_mode("val/f1", None) == "max"


def test_regression_metrics_of_several_outputs_equal_scikit_learns():
    rng = np.random.default_rng(1)
    y, out = rng.normal(size=(300, 2)), rng.normal(size=(300, 2))
    meter = EpochMeter(DataInfo("regression", (4,), 2), torch.device("cpu"))
    meter.update(torch.tensor(0.0), torch.tensor(out), torch.tensor(y))
    got = meter.compute("test")
    assert got["test/mse"] == pytest.approx(sk.mean_squared_error(y, out))
    assert got["test/r2"] == pytest.approx(sk.r2_score(y, out))


def test_losses_weight_classes_and_take_regression_errors_in_units_of_the_targets_std():
    logits, target = torch.randn(8, 3), torch.tensor([0, 1, 2, 0, 1, 2, 0, 0])
    weighted = WeightedCrossEntropy(torch.tensor([1.0, 2.0, 3.0]), 0.0)(logits, target)
    each = nn.functional.cross_entropy(logits, target, reduction="none")
    assert weighted == pytest.approx(float((each * torch.tensor([1.0, 2, 3])[target]).mean()))
    info = DataInfo("classification", (3,), 3, ["a", "b", "c"])
    assert resolve_class_weights("balanced", info, lambda: [0, 0, 1, 2]) == pytest.approx([2 / 3, 4 / 3, 4 / 3])
    loss = StandardizedLoss(nn.functional.mse_loss, (10.0,))
    assert float(loss(torch.tensor([[20.0]]), torch.tensor([[0.0]]))) == pytest.approx(4.0)


def test_weight_decay_spares_biases_and_fused_steps_equal_torchs_default():
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    groups = decay_groups(model, 0.1, 0.01)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0] and len(groups[0]["params"]) == 2
    twin = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    twin.load_state_dict(model.state_dict())
    fused = OPTIMIZERS.build("adamw", {}, params=decay_groups(model, 0.1, 0.01), lr=0.01, weight_decay=0.1)
    plain = torch.optim.AdamW(decay_groups(twin, 0.1, 0.01), lr=0.01)
    assert fused.defaults["fused"]
    for _ in range(5):
        for m, opt in ((model, fused), (twin, plain)):
            opt.zero_grad()
            m(torch.ones(3, 4)).square().sum().backward()
            opt.step()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(model.parameters(), twin.parameters()))
    assert float(l1_penalty(model).detach()) == pytest.approx(sum(float(p.detach().abs().sum()) for p in model.parameters() if p.ndim >= 2))


def scheduled(name: str, warmup: float = 0.0, **args) -> list[float]:
    from types import SimpleNamespace

    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(SimpleNamespace(name=name, warmup_epochs=warmup, args=args), optimizer, 20, 5)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_schedules_warm_up_then_decay_per_step():
    cosine = scheduled("cosine", warmup=1.0)
    assert cosine[:5] == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6]) and cosine[5] == 1.0
    assert cosine[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 14 / 15)))
    assert scheduled("step", step_size=2, gamma=0.5)[9:11] == [1.0, 0.5]
    assert max(scheduled("onecycle")) == pytest.approx(1.0)


def test_plateau_lowers_the_lr_after_patience_validations_without_a_better_value():
    plateau = Plateau(factor=0.5, patience=2, min_lr_ratio=0.2)
    drops = [plateau.observe(v, "min") for v in (1.0, 0.9, 0.95, 0.95, 0.91, 0.92, 0.93, 0.94, 0.96)]
    assert drops == [False, False, False, True, False, True, False, True, False] and plateau.scale == 0.2
