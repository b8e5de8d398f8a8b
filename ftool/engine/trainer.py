"""The training loop, readable top to bottom: `Trainer.fit` runs the epochs (every step of an
iteration is in it), `evaluate` streams a loader through the task's metrics."""

from __future__ import annotations

import contextlib
import gc
import math
import random
import signal
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ftool.config import TrainerConfig
from ftool.data import DataInfo
from ftool.engine import checkpoint
from ftool.engine.accelerator import Accelerator
from ftool.engine.loggers import JsonlLogger
from ftool.engine.progress import TrainProgress
from ftool.errors import RunInterrupted
from ftool.metrics import EpochMeter, monitor_mode
from ftool.optim import l1_penalty
from ftool.rundir import RunDir


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=False)


def plan_steps(cfg: TrainerConfig, steps_per_epoch: int) -> tuple[int, int]:
    """(epochs, optimizer steps) the run will make: `max_steps` wins over `epochs` when set."""
    total = cfg.max_steps if cfg.max_steps > 0 else cfg.epochs * steps_per_epoch
    return math.ceil(total / steps_per_epoch), total


class StopFlag:
    """SIGINT/SIGTERM only set this flag; the loop checks it between steps, then saves and stops.
    A second Ctrl-C stops at once."""

    def __init__(self):
        self.requested = False

    @contextlib.contextmanager
    def installed(self):
        def handler(signum, frame):
            if self.requested and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.requested = True

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


@torch.no_grad()
def evaluate(step_model: nn.Module, loader: DataLoader, loss_fn: nn.Module, acc: Accelerator,
             info: DataInfo, prefix: str) -> dict[str, float]:
    """Loss and metrics over `loader`, accumulated batch by batch (no logits are kept)."""
    step_model.eval()
    meter = EpochMeter(info, acc.device)
    for batch in loader:
        x, y = acc.to_device(batch)
        with acc.autocast():
            out = step_model(x)
            loss = loss_fn(out, y)
        meter.update(loss, out, y)
    return meter.compute(prefix)


@dataclass
class FitResult:
    metrics: dict[str, float]  # the last epoch's train loss and the best epoch's validation metrics
    best: dict | None  # {"monitor", "value", "epoch"}; None when nothing was validated
    epochs: int
    steps: int
    train_seconds: float  # training batches only, after the first (warm-up) batch
    train_samples: int


@dataclass
class Trainer:
    cfg: TrainerConfig
    acc: Accelerator
    model: nn.Module  # the module whose weights are saved
    step_model: nn.Module  # what runs the steps: `model`, or its compiled form
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    info: DataInfo
    run: RunDir
    logger: JsonlLogger
    monitor: str
    l1: float = 0.0
    stop: StopFlag = field(default_factory=StopFlag)

    def fit(self, train_loader: DataLoader, val_loader: DataLoader | None) -> FitResult:
        cfg, acc = self.cfg, self.acc
        steps_per_epoch = len(train_loader)
        epochs, total_steps = plan_steps(cfg, steps_per_epoch)
        mode = monitor_mode(self.monitor, cfg.mode)
        scaler = acc.grad_scaler()
        progress = TrainProgress(cfg.progress, epochs, cfg.log_every_n_steps)
        best, best_metrics, train_metrics = None, {}, {}
        step, timed_seconds, timed_samples = 0, 0.0, 0
        # Everything built so far lives for the whole run: keep the cyclic GC from re-scanning it
        # (a full collection over torch's and Hydra's objects stalls a step for ~0.2 s).
        gc.collect()
        gc.freeze()
        try:
            for epoch in range(1, epochs + 1):
                self.step_model.train()
                progress.start_epoch(epoch, min(steps_per_epoch, total_steps - step))
                loss_sum, seen = torch.zeros((), device=acc.device), 0
                timer, timer_samples = (time.perf_counter() if step else None), 0
                for i, batch in enumerate(train_loader, 1):
                    x, y = acc.to_device(batch)
                    self.optimizer.zero_grad(set_to_none=True)
                    with acc.autocast():
                        out = self.step_model(x)
                        loss = self.loss_fn(out, y)
                        objective = loss + self.l1 * l1_penalty(self.model) if self.l1 else loss
                    scaler.scale(objective).backward()
                    scale = scaler.get_scale()
                    scaler.step(self.optimizer)
                    scaler.update()
                    if scaler.get_scale() >= scale:  # a skipped fp16 step must not advance the LR
                        self.scheduler.step()
                    step += 1
                    loss_sum += loss.detach() * y.shape[0]
                    seen += y.shape[0]
                    if timer is None:  # the first batch warms up (allocations, compilation): untimed
                        self._sync()
                        timer = time.perf_counter()
                    else:
                        timer_samples += y.shape[0]
                    if i % cfg.log_every_n_steps == 0 or step == total_steps or i == steps_per_epoch:
                        speed = timer_samples / max(time.perf_counter() - timer, 1e-9) if timer_samples else None
                        loss_value = loss.item()
                        progress.advance(i, loss_value, speed)
                        self.logger.log({"step": step, "epoch": epoch, "split": "train",
                                         "train/loss": loss_value, "lr": self.optimizer.param_groups[0]["lr"]})
                    if self.stop.requested:
                        self._save_last(epoch - 1, step, best)  # a mid-epoch save: that epoch is unfinished
                        raise RunInterrupted(f"stopped by a signal at step {step}; checkpoint saved")
                    if step >= total_steps:
                        break
                self._sync()
                timed_seconds += time.perf_counter() - timer
                timed_samples += timer_samples

                train_metrics = {"train/loss": loss_sum.item() / max(seen, 1)}
                record = {"step": step, "epoch": epoch, "split": "train", **train_metrics}
                val_metrics = {}
                if cfg.validate and val_loader is not None and (epoch % cfg.val_every == 0 or epoch == epochs):
                    val_metrics = evaluate(self.step_model, val_loader, self.loss_fn, acc, self.info, "val")
                    self.logger.log({"step": step, "epoch": epoch, "split": "val", **val_metrics})
                    value = val_metrics[self.monitor]
                    if best is None or (value > best["value"] if mode == "max" else value < best["value"]):
                        best = {"monitor": self.monitor, "value": value, "epoch": epoch, "mode": mode}
                        best_metrics = val_metrics
                        checkpoint.save_weights(self.run.best_weights, self.model, epoch=epoch, step=step,
                                                monitor=self.monitor, value=value)
                self.logger.log(record)
                self._save_last(epoch, step, best)
                progress.end_epoch({**train_metrics, **val_metrics}, self.monitor)
        finally:
            progress.close()
            gc.unfreeze()
        return FitResult({**train_metrics, **best_metrics}, best, epochs, step, timed_seconds, timed_samples)

    def _save_last(self, epoch: int, step: int, best: dict | None) -> None:
        checkpoint.save_weights(self.run.last_weights, self.model, epoch=epoch, step=step)
        checkpoint.save_state(self.run.last_state, {
            "epoch": epoch, "step": step, "best": best,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
        })

    def _sync(self) -> None:
        if self.acc.device.type == "cuda":
            torch.cuda.synchronize()
