import pytest
import torch
from sklearn import metrics as sk

from ftool.config import TrainerConfig
from ftool.data import DataInfo
from ftool.errors import FtoolError
from ftool.metrics import EpochMeter, build_loss, monitor_mode, resolve_class_weights


def test_top5_differs_from_top1_even_when_the_first_batch_agrees():
    """MetricCollection's compute groups once merged top-1 and top-5 after a batch where both agreed."""
    meter = EpochMeter(DataInfo("classification", (4,), 10), torch.device("cpu"))
    logits = torch.eye(10)[:4] * 5  # batch 1: all top-1 correct
    meter.update(torch.tensor(0.1), logits, torch.arange(4))
    second = torch.zeros(4, 10)
    second[:, 0], second[:, 1] = 3.0, 2.0  # batch 2: target 1 is second best: top-5 right, top-1 wrong
    meter.update(torch.tensor(0.3), second, torch.ones(4, dtype=torch.long))
    result = meter.compute("test")
    assert result["test/accuracy"] == 0.5
    assert result["test/top5_accuracy"] == 1.0
    assert abs(result["test/loss"] - 0.2) < 1e-6  # batch-size weighted mean


def test_regression_metrics():
    meter = EpochMeter(DataInfo("regression", (3,), 1), torch.device("cpu"))
    y = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    meter.update(torch.tensor(0.0), y + torch.tensor([[0.5], [-0.5], [0.5], [-0.5]]), y)
    result = meter.compute("val")
    assert result["val/mse"] == 0.25 and result["val/mae"] == 0.5
    assert abs(result["val/r2"] - (1 - 1.0 / 5.0)) < 1e-6


def _stream(meter: EpochMeter, outputs: torch.Tensor, targets: torch.Tensor, batches: int = 4) -> dict:
    for out, y in zip(outputs.chunk(batches), targets.chunk(batches)):
        meter.update(torch.tensor(0.0), out, y)
    return meter.compute("val")


def test_classification_metrics_streamed_in_batches_equal_scikit_learns_on_the_whole_set():
    """Macro averages over the classes that occur (class 6 never does, class 5 is never a target),
    as scikit-learn's with zero_division=0; top-5 accuracy; accuracy."""
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(203, 7, generator=g), torch.randint(0, 5, (203,), generator=g)
    logits[:, 6] -= 100.0
    got = _stream(EpochMeter(DataInfo("classification", (4,), 7), torch.device("cpu")), logits, targets)
    predicted = logits.argmax(-1)
    assert 5 in predicted and 6 not in predicted  # the cases the macro average has to get right
    assert got["val/accuracy"] == pytest.approx(sk.accuracy_score(targets, predicted))
    for name, score in (("precision", sk.precision_score), ("recall", sk.recall_score), ("f1", sk.f1_score)):
        assert got[f"val/{name}"] == pytest.approx(score(targets, predicted, average="macro", zero_division=0)), name
    assert got["val/top5_accuracy"] == pytest.approx(sk.top_k_accuracy_score(targets, logits, k=5, labels=range(7)))
    assert got["val/top5_accuracy"] > got["val/accuracy"]


def test_regression_metrics_of_several_outputs_equal_scikit_learns():
    g = torch.Generator().manual_seed(0)
    targets = torch.randn(150, 3, generator=g) * torch.tensor([1.0, 10.0, 0.1]) + 100.0  # far from 0, unlike scales
    outputs = targets + 0.3 * torch.randn(150, 3, generator=g)
    got = _stream(EpochMeter(DataInfo("regression", (4,), 3), torch.device("cpu")), outputs, targets)
    assert got["val/mse"] == pytest.approx(sk.mean_squared_error(targets, outputs), rel=1e-6)
    assert got["val/mae"] == pytest.approx(sk.mean_absolute_error(targets, outputs), rel=1e-6)
    assert got["val/r2"] == pytest.approx(sk.r2_score(targets.double(), outputs.double()), rel=1e-6)


def test_the_metrics_of_several_processes_are_those_of_their_summed_counts():
    """`total` stands for the all-reduce: two halves, each given the other's sums, equal the whole."""
    g = torch.Generator().manual_seed(1)
    logits, targets = torch.randn(64, 3, generator=g), torch.randint(0, 3, (64,), generator=g)
    info, cpu = DataInfo("classification", (4,), 3), torch.device("cpu")
    whole, first, second = EpochMeter(info, cpu), EpochMeter(info, cpu), EpochMeter(info, cpu)
    whole.update(torch.tensor(0.5), logits, targets)
    first.update(torch.tensor(0.2), logits[:40], targets[:40])
    second.update(torch.tensor(1.0), logits[40:], targets[40:])
    other = {id(first.sums[k]): second.sums[k] for k in first.sums}
    assert first.compute("val", total=lambda t: t + other[id(t)]) == pytest.approx(whole.compute("val"))


def test_monitor_mode_follows_metric_name():
    assert monitor_mode("val/loss", None) == "min" and monitor_mode("val/mae", None) == "min"
    assert monitor_mode("val/accuracy", None) == "max" and monitor_mode("val/loss", "max") == "max"


def test_per_class_figures_and_confusion_matrix_equal_scikit_learns():
    g = torch.Generator().manual_seed(2)
    logits, targets = torch.randn(150, 4, generator=g), torch.randint(0, 3, (150,), generator=g)  # class 3: no target
    meter = EpochMeter(DataInfo("classification", (4,), 4, ["a", "b", "c", "d"]), torch.device("cpu"))
    _stream(meter, logits, targets)
    got, predicted = meter.per_class(), logits.argmax(-1)
    precision, recall, f1, support = sk.precision_recall_fscore_support(targets, predicted, labels=range(4),
                                                                         zero_division=0)
    assert got["classes"] == ["a", "b", "c", "d"] and got["support"] == support.tolist() == [*support[:3], 0]
    for name, expected in (("precision", precision), ("recall", recall), ("f1", f1)):
        assert got[name] == pytest.approx(expected.tolist()), name
    assert got["confusion_matrix"] == sk.confusion_matrix(targets, predicted, labels=range(4)).tolist()
    assert EpochMeter(DataInfo("regression", (3,), 1), torch.device("cpu")).per_class() is None


def test_regression_losses_are_of_the_errors_in_units_of_the_targets_std():
    info = DataInfo("regression", (3,), 1, target_mean=[10.0], target_std=[2.0])
    outputs, targets = torch.tensor([[10.0], [14.0]]), torch.tensor([[10.0], [10.0]])  # errors 0 and 2 stds
    expected = {"auto": 2.0, "mse": 2.0, "l1": 1.0, "huber": 0.75}  # huber: 2 - 1/2 beyond one std
    for name, value in expected.items():
        loss = build_loss(TrainerConfig(loss=name), info, torch.device("cpu"))
        assert loss(outputs, targets).item() == pytest.approx(value), name
    unscaled = build_loss(TrainerConfig(loss="l1"), DataInfo("regression", (3,), 1), torch.device("cpu"))
    assert unscaled(outputs, targets).item() == pytest.approx(2.0)  # data=regression: the targets as they are
    with pytest.raises(FtoolError, match="trainer.loss: l1 does not fit classification data; use cross_entropy"):
        build_loss(TrainerConfig(loss="l1"), DataInfo("classification", (3,), 2), torch.device("cpu"))
    with pytest.raises(FtoolError, match="cross_entropy does not fit regression data; use mse, l1, huber"):
        build_loss(TrainerConfig(loss="cross_entropy"), info, torch.device("cpu"))


def test_label_smoothing_is_for_class_labels_only():
    regression = DataInfo("regression", (10,), 1)
    with pytest.raises(FtoolError, match="trainer.label_smoothing: smooths class labels; this data is regression"):
        build_loss(TrainerConfig(label_smoothing=0.1), regression, torch.device("cpu"))
    loss = build_loss(TrainerConfig(label_smoothing=0.1), DataInfo("classification", (10,), 3), torch.device("cpu"))
    logits, target = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]]), torch.tensor([0, 2])
    smoothed = torch.nn.functional.cross_entropy(logits, target, label_smoothing=0.1)
    assert loss(logits, target).item() == pytest.approx(smoothed.item())
    assert smoothed.item() > torch.nn.functional.cross_entropy(logits, target).item() + 0.01


def test_class_weights_weigh_each_sample_by_its_class_and_balanced_counts_the_train_split():
    info = DataInfo("classification", (2,), 2, ["ham", "spam"])
    assert resolve_class_weights("balanced", info, lambda: [0, 0, 0, 1]) == pytest.approx([4 / 6, 4 / 2])
    assert resolve_class_weights([1, 5], info, list) == [1.0, 5.0] and resolve_class_weights(None, info, list) is None
    with pytest.raises(FtoolError, match=r"trainer.class_weights: 3 weights for 2 classes \(ham, spam\); give one "):
        resolve_class_weights([1, 2, 3], info, list)
    with pytest.raises(FtoolError, match="trainer.class_weights=balanced: the train split has no sample of spam"):
        resolve_class_weights("balanced", info, lambda: [0, 0])
    unnamed = DataInfo("classification", (2,), 3)  # (a dataset of one's own that names no class: inf weights)
    with pytest.raises(FtoolError, match="trainer.class_weights=balanced: the train split has no sample of 2"):
        resolve_class_weights("balanced", unnamed, lambda: [0, 1, 1])
    with pytest.raises(FtoolError, match="trainer.class_weights: weights classes; this data is regression"):
        resolve_class_weights("balanced", DataInfo("regression", (2,), 1), list)

    logits, target = torch.randn(6, 2, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 0, 0, 0, 1, 1])
    weighted = build_loss(TrainerConfig(), info, torch.device("cpu"), [1.0, 3.0])
    per_sample = torch.nn.functional.cross_entropy(logits, target, reduction="none") * torch.tensor([1, 1, 1, 1, 3, 3])
    assert weighted(logits, target).item() == pytest.approx(per_sample.mean().item())
    # Averaged over samples, not over the batch's weights (torch's weight=): two halves, as two accumulated
    # batches or two processes' batches, give the whole batch's loss.
    halves = (weighted(logits[:3], target[:3]) + weighted(logits[3:], target[3:])) / 2
    assert halves.item() == pytest.approx(weighted(logits, target).item())
    plain = build_loss(TrainerConfig(), info, torch.device("cpu"), [1.0, 1.0])
    assert plain(logits, target).item() == pytest.approx(torch.nn.functional.cross_entropy(logits, target).item())
