"""Metrics per task, streamed batch by batch, and the loss that goes with the task.

Most metrics are functions of a few running sums (a confusion matrix for classification; per-output
error and target sums for regression), so a pass keeps no outputs, and several processes combine
their sums with one all-reduce each. AUROC, average precision and metrics of one's own (registered
in METRICS) need the outputs: those are kept and gathered. (torchmetrics computed the same and cost every command 2 s of
imports: its package imports scipy.signal, matplotlib and transformers.)
"""

from __future__ import annotations

import re

from typing import Callable

import torch
from torch import nn

from ftool.data import DataInfo
from ftool.registry import LOSSES, METRICS

LOWER_IS_BETTER = ("loss", "mse", "rmse", "mae")
TOP_K = 5  # top-5 accuracy is reported for more than this many classes
_AVERAGED = ("precision", "recall", "f1")
CONFUSION = ("accuracy", *_AVERAGED, *(f"{m}_{a}" for m in _AVERAGED for a in ("macro", "weighted")))
SCORES = ("auroc", "average_precision")  # of the outputs themselves: kept, and gathered from every process
REGRESSION = ("mse", "rmse", "mae", "r2")


def metric_names(info: DataInfo, chosen: list[str] | None = None) -> list[str]:
    """The loss and `chosen` (trainer.metrics), else the task's usual ones: accuracy and
    precision/recall/F1 (of the positive class, index 1, for two classes; else macro), top-5 accuracy over
    more than 5 classes; MSE, MAE, R2."""
    if chosen:
        return ["loss", *dict.fromkeys(chosen)]
    if info.task == "regression":
        return ["loss", "mse", "mae", "r2"]
    return ["loss", "accuracy", "precision", "recall", "f1", *(["top5_accuracy"] if info.num_outputs > TOP_K else [])]


def known_metrics(info: DataInfo) -> list[str]:
    """What trainer.metrics may name for this data: built-in names and the metrics registered in METRICS."""
    if info.task == "regression":
        return [*REGRESSION, *METRICS.names()]
    return [*CONFUSION, *SCORES, *(f"top{k}_accuracy" for k in range(2, info.num_outputs + 1)), *METRICS.names()]


def default_monitor(info: DataInfo) -> str:
    return "val/loss" if info.task == "regression" else "val/accuracy"


def monitor_mode(monitor: str, mode: str | None) -> str:
    if mode:
        return mode
    return "min" if monitor.rsplit("/", 1)[-1] in LOWER_IS_BETTER else "max"


REGRESSION_LOSSES = {  # in units of each target's std: huber's errors beyond one std count linearly
    "mse": nn.functional.mse_loss, "l1": nn.functional.l1_loss, "huber": nn.functional.huber_loss}


def build_loss(cfg, info: DataInfo, device: torch.device,
               class_weights: list[float] | None = None) -> nn.Module:
    """The task's loss; `class_weights` (`resolve_class_weights`'s) weight each sample by its class."""
    if isinstance(cfg.loss, dict):  # {_target_: torch.nn.SmoothL1Loss, ...}
        args = dict(cfg.loss)
        return LOSSES.build(args.pop("_target_"), args, info=info).to(device)
    if cfg.loss in LOSSES.names():  # a loss of one's own: (outputs, targets) -> the batch's mean loss
        return LOSSES.build(cfg.loss, {}, info=info).to(device)
    if info.task == "regression":
        name = "mse" if cfg.loss == "auto" else cfg.loss
        return StandardizedLoss(REGRESSION_LOSSES[name], info.target_std or 1.0).to(device)
    if class_weights:
        return WeightedCrossEntropy(torch.tensor(class_weights, dtype=torch.float32), cfg.label_smoothing).to(device)
    return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)


def resolve_class_weights(setting, info: DataInfo, train_labels: Callable[[], list[int]]) -> list[float] | None:
    """trainer.class_weights as a weight per class: `balanced` gives each class n / (classes * its count in
    the train split), as scikit-learn's class_weight="balanced"; the weights average 1 over the samples."""
    if setting is None or info.task != "classification":
        return None
    if setting != "balanced":
        return [float(w) for w in setting]
    counts = torch.bincount(torch.tensor(train_labels(), dtype=torch.long), minlength=info.num_outputs)
    return (counts.sum() / (info.num_outputs * counts.clamp(min=1))).tolist()


class WeightedCrossEntropy(nn.Module):
    """Cross-entropy with each sample weighted by its class, averaged over the samples (as Keras'
    class_weight). torch's own `weight=` divides by the batch's summed weights instead, which would make
    accumulated batches and several processes' batches differ from one larger batch."""

    def __init__(self, weights: torch.Tensor, label_smoothing: float):
        super().__init__()
        self.register_buffer("weights", weights)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        losses = nn.functional.cross_entropy(logits, target, reduction="none", label_smoothing=self.label_smoothing)
        return (losses * self.weights[target]).mean()


class StandardizedLoss(nn.Module):
    """A regression loss of the errors in units of each target's std (the model's outputs are scaled
    by it: ftool.models.scale_outputs), so the loss and its gradients are those of standardized
    targets: for MSE, 1.0 is the loss of always predicting the mean."""

    def __init__(self, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], std):
        super().__init__()
        self.loss = loss
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.loss(outputs / self.std, targets / self.std)


class EpochMeter:
    """Mean loss (weighted by batch size) and the chosen metrics over one pass of a loader: exact over the
    whole split, and summed (or, for metrics of the outputs themselves, gathered) across processes."""

    def __init__(self, info: DataInfo, device: torch.device, names: list[str] | None = None):
        self.info, self.names = info, metric_names(info, names)
        self.top_ks = [int(n[3:-9]) for n in self.names if re.fullmatch(r"top\d+_accuracy", n)]
        real = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        k = info.num_outputs
        self.sums = {"loss": torch.zeros(2, dtype=real, device=device)}  # loss x samples, samples
        if info.task == "regression":  # per output: squared error, absolute error, target, target squared
            self.sums["errors"] = torch.zeros(4, k, dtype=real, device=device)
        else:  # rows: target class, columns: predicted class; and the targets among the top k. Counted
            # in floats (exact to 2**53, 2**24 on MPS): MPS's index_add_ has not always taken int64.
            self.sums["confusion"] = torch.zeros(k * k, dtype=real, device=device)
            self.sums["top_k"] = torch.zeros(len(self.top_ks), dtype=real, device=device)
        self.kept = ([], []) if any(n in SCORES or n in METRICS.names() for n in self.names) else None

    @torch.no_grad()
    def update(self, loss: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        n, outputs = targets.shape[0], outputs.detach()
        real = self.sums["loss"].dtype
        self.sums["loss"][0] += loss.detach().to(real) * n
        self.sums["loss"][1] += n
        if self.kept is not None:
            self.kept[0].append(outputs.float())
            self.kept[1].append(targets)
        if self.info.task == "regression":
            y = targets.reshape(n, -1).to(real)
            error = outputs.reshape(n, -1).to(real) - y
            self.sums["errors"] += torch.stack([error.square().sum(0), error.abs().sum(0), y.sum(0), y.square().sum(0)])
            return
        k = self.info.num_outputs
        predicted = outputs.argmax(-1)
        self.sums["confusion"].index_add_(0, targets * k + predicted, torch.ones_like(predicted, dtype=real))
        if self.top_ks:
            hits = outputs.topk(max(self.top_ks), -1).indices == targets[:, None]
            self.sums["top_k"] += torch.stack([hits[:, :top].any(-1).sum() for top in self.top_ks]).to(real)

    def compute(self, prefix: str, acc=None) -> dict[str, float]:
        """The metrics as `<prefix>/<name>`; `acc` (an Accelerator) sums and gathers them over the processes."""
        sums = {name: (acc.sum(t) if acc else t).cpu().double() for name, t in self.sums.items()}
        loss, samples = sums["loss"].tolist()
        values = {"loss": loss / samples if samples else 0.0}
        if "errors" in sums:
            values.update(_regression(sums["errors"], samples))
        else:
            k = self.info.num_outputs
            values.update(_classification(sums["confusion"].view(k, k)))
            values.update({f"top{top}_accuracy": float(hits) / max(samples, 1)
                           for top, hits in zip(self.top_ks, sums["top_k"])})
        if self.kept is not None:
            outputs, targets = (torch.cat(part) if part else torch.zeros(0) for part in self.kept)
            outputs, targets = (acc.gather(t) if acc else t for t in (outputs, targets))
            values.update({n: _of_outputs(n, outputs.cpu(), targets.cpu()) for n in self.names if n not in values})
        return {f"{prefix}/{name}": float(values[name]) for name in self.names}

    def per_class(self) -> dict | None:
        """Classification: each class's precision, recall, F1 and support, and the confusion matrix
        (rows: targets, columns: predictions); None for regression. This process's counts (`ftool eval`
        runs in one)."""
        if "confusion" not in self.sums:
            return None
        k = self.info.num_outputs
        confusion = self.sums["confusion"].cpu().double().view(k, k)
        precision, recall, f1 = _per_class(confusion)
        return {"classes": list(self.info.class_names) or [str(i) for i in range(k)],
                "precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
                "support": confusion.sum(1).long().tolist(), "confusion_matrix": confusion.long().tolist()}


def _of_outputs(name: str, outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """A metric of the whole split's outputs: AUROC and average precision (scikit-learn's) of the class
    probabilities (the positive class's of two; else the macro average over the classes that occur, one
    against the rest), or a metric of one's own registered in METRICS: (outputs, targets) -> float."""
    if name not in SCORES:
        return float(METRICS.get(name)(outputs, targets))
    from sklearn.metrics import average_precision_score, roc_auc_score

    score = roc_auc_score if name == "auroc" else average_precision_score
    probs, y = outputs.softmax(-1).numpy(), targets.numpy()
    classes = [1] if probs.shape[1] == 2 else range(probs.shape[1])
    values = [score(y == c, probs[:, c]) for c in classes if 0 < (y == c).sum() < len(y)]
    return sum(values) / len(values) if values else float("nan")


def _ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a / b, 0 where b is 0 (scikit-learn's zero_division=0)."""
    return torch.where(b > 0, a / b.clamp(min=1e-300), torch.zeros_like(a))


def _per_class(confusion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each class's precision, recall and F1 from the confusion matrix (rows: targets)."""
    hits, actual, predicted = confusion.diagonal(), confusion.sum(1), confusion.sum(0)
    return _ratio(hits, predicted), _ratio(hits, actual), _ratio(2 * hits, actual + predicted)


def _classification(confusion: torch.Tensor) -> dict[str, float]:
    """Accuracy; precision, recall and F1 macro- and support-weighted-averaged (as scikit-learn's, over the
    classes that occur), and unqualified: the positive class's of two classes, else macro."""
    values = {"accuracy": float(_ratio(confusion.diagonal().sum(), confusion.sum()))}
    present, support = (confusion.sum(0) + confusion.sum(1)) > 0, confusion.sum(1)
    for name, metric in zip(_AVERAGED, _per_class(confusion)):
        values[f"{name}_macro"] = metric[present].mean() if present.any() else 0.0
        values[f"{name}_weighted"] = float(_ratio((metric * support).sum(), support.sum()))
        values[name] = metric[1] if len(confusion) == 2 else values[f"{name}_macro"]
    return values


def _regression(errors: torch.Tensor, samples: float) -> dict[str, float]:
    """MSE and MAE over every output value; R2 averaged over the outputs (1 for a perfect fit of
    constant targets, 0 for an imperfect one, as scikit-learn's)."""
    squared, absolute, target, target_squared = errors
    if not samples:
        return {"mse": 0.0, "mae": 0.0, "rmse": 0.0, "r2": 0.0}
    spread = target_squared - target.square() / samples  # the targets' summed squared deviation
    r2 = torch.where(spread > 0, 1 - squared / spread.clamp(min=1e-300), (squared == 0).double())
    return {"mse": squared.sum() / squared.numel() / samples, "mae": absolute.sum() / absolute.numel() / samples,
            "rmse": (squared / samples).sqrt().mean(), "r2": r2.mean()}
