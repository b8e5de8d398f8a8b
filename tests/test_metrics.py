import torch

from ftool.data import DataInfo
from ftool.metrics import EpochMeter, monitor_mode


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


def test_monitor_mode_follows_metric_name():
    assert monitor_mode("val/loss", None) == "min" and monitor_mode("val/mae", None) == "min"
    assert monitor_mode("val/accuracy", None) == "max" and monitor_mode("val/loss", "max") == "max"
