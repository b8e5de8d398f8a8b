"""Metrics per task (torchmetrics, streamed batch by batch) and the loss that goes with the task."""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics import classification as C
from torchmetrics import regression as R
from torchmetrics.wrappers import LambdaInputTransformer

from ftool.config import TrainerConfig
from ftool.data import DataInfo
from ftool.errors import FtoolError

LOWER_IS_BETTER = ("loss", "mse", "mae")


def _positive_class(metric):
    """A binary metric fed the logits of two classes: it sees the predicted class (1 = positive)."""
    return LambdaInputTransformer(metric, transform_pred=lambda logits: logits.argmax(-1))


def build_metrics(info: DataInfo) -> MetricCollection:
    """accuracy and precision/recall/F1 (of the positive class, index 1, for two classes; else
    macro), top-5 accuracy over more than 5 classes; MSE, MAE, R2."""
    if info.task == "regression":
        metrics = {"mse": R.MeanSquaredError(), "mae": R.MeanAbsoluteError(),
                   "r2": R.R2Score(multioutput="uniform_average")}
        return MetricCollection(metrics, compute_groups=False)
    n = info.num_outputs
    if n == 2:
        return MetricCollection({"accuracy": C.MulticlassAccuracy(2, average="micro"),
                                 "precision": _positive_class(C.BinaryPrecision()),
                                 "recall": _positive_class(C.BinaryRecall()),
                                 "f1": _positive_class(C.BinaryF1Score())}, compute_groups=False)
    metrics = {
        "accuracy": C.MulticlassAccuracy(n, average="micro"),
        "precision": C.MulticlassPrecision(n, average="macro"),
        "recall": C.MulticlassRecall(n, average="macro"),
        "f1": C.MulticlassF1Score(n, average="macro"),
    }
    if n > 5:
        metrics["top5_accuracy"] = C.MulticlassAccuracy(n, top_k=5, average="micro")
    # No compute groups: they merge metrics whose states match after the first batch, which
    # top-1 and top-5 accuracy can, and then report top-1 for both.
    return MetricCollection(metrics, compute_groups=False)


def metric_names(info: DataInfo) -> list[str]:
    return ["loss", *build_metrics(info).keys()]


def default_monitor(info: DataInfo) -> str:
    return "val/loss" if info.task == "regression" else "val/accuracy"


def monitor_mode(monitor: str, mode: str | None) -> str:
    if mode:
        return mode
    return "min" if monitor.rsplit("/", 1)[-1] in LOWER_IS_BETTER else "max"


def build_loss(cfg: TrainerConfig, info: DataInfo) -> nn.Module:
    fits = "mse" if info.task == "regression" else "cross_entropy"
    if cfg.loss not in ("auto", fits):
        raise FtoolError(f"trainer.loss: {cfg.loss} does not fit {info.task} data; use {fits} (or auto)")
    if fits == "mse":
        return nn.MSELoss()
    return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)


class EpochMeter:
    """Mean loss (weighted by batch size) and the task's metrics over one pass of a loader."""

    def __init__(self, info: DataInfo, device: torch.device):
        self.loss = MeanMetric().to(device)
        self.metrics = build_metrics(info).to(device)
        self.regression = info.task == "regression"

    def update(self, loss: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.loss.update(loss.detach(), weight=targets.shape[0])
        outputs = outputs.detach().float()
        if self.regression and outputs.shape[-1] == 1:
            outputs, targets = outputs.squeeze(-1), targets.squeeze(-1)
        self.metrics.update(outputs, targets)

    def compute(self, prefix: str) -> dict[str, float]:
        values = {"loss": self.loss.compute(), **self.metrics.compute()}
        return {f"{prefix}/{k}": float(v) for k, v in values.items()}
