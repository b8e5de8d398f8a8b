"""The training loop, readable top to bottom: `Trainer.fit` runs the epochs (every step of an
iteration is in it), `evaluate` streams a loader through the task's metrics."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import random
import signal
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader

from ftool.config import TrainerConfig
from ftool.data import DataInfo
from ftool.engine import checkpoint
from ftool.engine.accelerator import Accelerator
from ftool.engine.progress import EvalProgress, TrainProgress, console, warn
from ftool.errors import FtoolError, RunInterrupted
from ftool.finetune import pretrained_parameters, set_trainable
from ftool.metrics import EpochMeter, monitor_mode
from ftool.optim import continue_schedule, l1_penalty, lower_now
from ftool.rundir import RunDir
from ftool.values import figure


def seed_everything(seed: int, deterministic: bool) -> None:
    if deterministic:  # else cuBLAS refuses deterministic mode on CUDA; read when its first handle is made
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic != torch.are_deterministic_algorithms_enabled():  # (the call imports the compiler: 1.3 s)
        torch.use_deterministic_algorithms(deterministic, warn_only=False)


def rng_state() -> dict:
    numpy_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(numpy_state[1].copy()), "pos": numpy_state[2],
                       "has_gauss": numpy_state[3], "cached_gaussian": numpy_state[4]}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy(), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def plan_steps(cfg: TrainerConfig, steps_per_epoch: int, at: Position | None = None) -> tuple[int, int]:
    """(last epoch, optimizer steps in all) of the run: `max_steps` wins over `epochs` when set. A resumed
    run (`at`) counts the steps made before its epoch, then `steps_per_epoch` for the rest: the batching
    may have changed at an epoch's end."""
    at = at or Position()
    before = at.step - math.ceil(at.batch / cfg.accumulate_grad_batches)  # steps made before epoch `at.epoch`
    if cfg.max_steps > 0:
        return at.epoch - 1 + math.ceil((cfg.max_steps - before) / steps_per_epoch), cfg.max_steps
    return cfg.epochs, before + (cfg.epochs - at.epoch + 1) * steps_per_epoch


def batches_per_epoch(loader: DataLoader) -> int:
    """Batches this process sees in a whole epoch (its sampler may be part-way through one)."""
    return math.ceil(loader.sampler.per_rank / loader.batch_size)


class StopFlag:
    """SIGINT/SIGTERM only set this flag; the loop checks it between steps (all processes agree),
    then saves and stops. A second Ctrl-C stops at once."""

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
def evaluate(model: nn.Module, loader: DataLoader, loss_fn: nn.Module, acc: Accelerator,
             info: DataInfo, prefix: str, progress: EvalProgress | None = None,
             meter: EpochMeter | None = None) -> dict[str, float]:
    """Loss and metrics over `loader`, accumulated batch by batch (no logits are kept) and
    summed across processes. `progress` is advanced per batch, then closed. `meter`: one of the
    caller's, to read more from afterwards (`ftool eval`'s per-class figures)."""
    model.eval()
    meter = meter or EpochMeter(info, acc.device)
    # Every FSDP forward gathers parameters: a process with fewer batches joins the others' last ones.
    extra = acc.max(len(loader)) - len(loader) if acc.sharded else 0
    x = torch.zeros(1, *info.input_shape, device=acc.device, dtype=torch.long if info.text else torch.float)
    try:
        for batch in loader:
            x, y = acc.to_device(batch)
            with acc.autocast():
                out = model(x)
                loss = loss_fn(out, y)
            meter.update(loss, out, y)
            if progress is not None:
                progress.advance()
    finally:
        if progress is not None:
            progress.close()
    for _ in range(extra):
        with acc.autocast():
            model(x)
    return meter.compute(prefix, total=acc.sum)


# Steps skipped in a row for a non-finite loss (trainer.on_nonfinite=skip) that mean the model has
# diverged (its outputs overflow), not that a stray batch was bad: the run stops.
DIVERGED_AFTER = 10


@dataclass
class Position:
    """Where training stands; saved in every `last` checkpoint so a run resumes exactly."""

    epoch: int = 1  # the epoch in progress
    batch: int = 0  # batches of it already trained
    step: int = 0  # optimizer steps so far
    loss_sum: float = 0.0  # this epoch's summed training loss and sample count so far
    seen: int = 0
    best: dict | None = None  # {"monitor", "value", "epoch", "mode"}
    best_metrics: dict = field(default_factory=dict)  # the best epoch's validation metrics
    stale: int = 0  # validations without improvement (early stopping)
    layout: dict | None = None  # mid-epoch: the batching that `batch` counts in (a resume must batch alike)


def _check_same_batching(at: Position, layout: dict) -> None:
    """A checkpoint from the middle of an epoch counts the batches done; resumed in other batches,
    that count would skip or repeat samples, silently. (Checkpoints before this field: unchecked.)"""
    if not at.batch or not at.layout or all(layout.get(key) == value for key, value in at.layout.items()):
        return  # (a key newer than the checkpoint goes unchecked)
    changed = ", ".join(f"{key}={value} (now {layout.get(key)})" for key, value in at.layout.items()
                        if layout.get(key) != value)
    raise FtoolError(f"trainer.resume: the checkpoint is from the middle of epoch {at.epoch}, taken with {changed}; "
                     f"finish that epoch with those settings (trainer.epochs={at.epoch}), then resume with the new ones")


@dataclass
class FitResult:
    metrics: dict[str, float]  # the last epoch's train loss and the best epoch's validation metrics
    best: dict | None
    epochs: int
    steps: int
    train_seconds: float  # training batches only, after the first (warm-up) batch of this process
    train_samples: int
    stopped_early: bool
    first_step_at: float | None  # time.perf_counter() when the first optimizer step had finished


@dataclass
class Trainer:
    cfg: TrainerConfig
    acc: Accelerator
    model: nn.Module  # the module whose weights are saved
    step_model: nn.Module  # what runs the steps: `model`, wrapped for DDP/FSDP and/or compiled
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    info: DataInfo
    run: RunDir
    logger: object  # ftool.engine.loggers.Loggers
    monitor: str
    l1: float = 0.0
    stop: StopFlag = field(default_factory=StopFlag)
    ema: AveragedModel | None = None
    scaler: torch.amp.GradScaler | None = None
    unfreeze: tuple[int, list[str]] | None = None  # (epoch, frozen parameter names): train them from then on

    def __post_init__(self):
        self.scaler = self.scaler or self.acc.grad_scaler()

    def fit(self, train_loader: DataLoader, val_loader: DataLoader | None, at: Position | None = None) -> FitResult:
        cfg, acc = self.cfg, self.acc
        at = at or Position()
        accum = cfg.accumulate_grad_batches
        layout = self._layout(train_loader)
        batches = batches_per_epoch(train_loader)
        steps_per_epoch = math.ceil(batches / accum)
        epochs, total_steps = plan_steps(cfg, steps_per_epoch, at)
        mode = monitor_mode(self.monitor, cfg.mode)
        progress = TrainProgress(cfg.progress and acc.is_main, epochs, cfg.log_every_n_steps)
        timer, timed_seconds, timed_samples, first_step_at = None, 0.0, 0, None
        train_metrics, stopped_early, skipped_in_row = {}, False, 0
        # Everything built so far lives for the whole run: keep the cyclic GC from re-scanning it
        # (a full collection over torch's and Hydra's objects stalls a step for ~0.2 s).
        gc.collect()
        gc.freeze()
        epoch = at.epoch - 1  # stays so when a run resumed after its last epoch has none left
        try:
            for epoch in range(at.epoch, epochs + 1):
                first = at.batch if epoch == at.epoch else 0  # batches of this epoch already done
                loss_sum = torch.tensor(at.loss_sum if first else 0.0, device=acc.device)
                seen = at.seen if first else 0
                train_loader.sampler.set_epoch(epoch, first * train_loader.batch_size)
                if self.unfreeze and epoch >= self.unfreeze[0]:
                    set_trainable(self.model, self.unfreeze[1], True)
                    console.print(f"finetune: epoch {epoch}: {len(self.unfreeze[1])} frozen parameters now train")
                    self.unfreeze = None
                self.step_model.train()
                progress.start_epoch(epoch, min(batches, first + (total_steps - at.step) * accum), first)
                epoch_samples, step_samples, group_loss_bad = 0, 0, False
                if timer is not None:
                    timer = time.perf_counter()
                i = first
                # (a run stopped at its last step, mid-epoch, by a signal or a failed test resumes with none left)
                for i, batch in enumerate(train_loader if at.step < total_steps else (), first + 1):
                    x, y = acc.to_device(batch)
                    # The step's gradient is the mean over the samples of its whole group of batches, as
                    # one big batch would give: weight each batch by its share (the last may be short).
                    group_start = (i - 1) // accum * accum * train_loader.batch_size
                    group_samples = min(accum * train_loader.batch_size, train_loader.sampler.per_rank - group_start)
                    steps_now = i % accum == 0 or i == batches  # the group's last batch
                    with acc.gradient_sync(steps_now):
                        with acc.autocast():
                            out = self.step_model(x)
                            loss = self.loss_fn(out, y)
                            objective = loss + self.l1 * l1_penalty(self.model) if self.l1 else loss
                        self.scaler.scale(objective * (y.shape[0] / group_samples)).backward()
                    group_loss_bad |= not bool(torch.isfinite(loss))
                    loss_sum += loss.detach() * y.shape[0]
                    seen += y.shape[0]
                    step_samples += y.shape[0]
                    if not steps_now:
                        continue  # accumulate: the step comes after the group's last batch

                    if acc.any(group_loss_bad):
                        if cfg.on_nonfinite == "stop":
                            last = self.run.relative(self.run.last_weights) if self.run.last_weights.is_file() else "none yet"
                            raise FtoolError(f"training stopped: non-finite loss at step {at.step + 1} (epoch {epoch}); "
                                             f"last good checkpoint: {last}; trainer.on_nonfinite=skip skips such steps")
                        skipped_in_row += 1
                        if skipped_in_row == DIVERGED_AFTER:
                            raise FtoolError(f"training stopped: steps {at.step + 2 - skipped_in_row} to {at.step + 1} "
                                             f"(epoch {epoch}) all had a non-finite loss: the model has diverged, which "
                                             f"skipping steps cannot undo; a lower optimizer.lr or trainer.grad_clip=1.0 "
                                             f"keeps it from diverging")
                        warn(f"step {at.step + 1}: non-finite loss, step skipped")
                        self.optimizer.zero_grad(set_to_none=True)
                    else:
                        skipped_in_row = 0
                        if cfg.grad_clip > 0:
                            self.scaler.unscale_(self.optimizer)
                            params = self.model.parameters()
                            if cfg.grad_clip_algorithm == "norm":
                                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                            else:
                                nn.utils.clip_grad_value_(params, cfg.grad_clip)
                        scale = self.scaler.get_scale()
                        self.scaler.step(self.optimizer)
                        self.scaler.update()
                        self.optimizer.zero_grad(set_to_none=True)
                        if self.scaler.get_scale() >= scale:  # a skipped fp16 step must not advance the LR
                            self.scheduler.step()
                        if self.ema is not None:
                            self.ema.update_parameters(self.model)
                    group_loss_bad = False
                    at.step += 1

                    if timer is None:  # the first step warms up (allocations, compilation): untimed
                        self._sync()
                        timer = first_step_at = time.perf_counter()
                    else:
                        epoch_samples += step_samples * acc.world_size
                    step_samples = 0
                    if at.step % cfg.log_every_n_steps == 0 or at.step == total_steps or i == batches:
                        loss_value = loss.item()
                        elapsed = time.perf_counter() - timer
                        speed = epoch_samples / elapsed if epoch_samples and elapsed else None
                        progress.advance(i, loss_value, speed)
                        record = {"step": at.step, "epoch": epoch, "split": "train", "train/loss_step": loss_value,
                                  "lr": self.optimizer.param_groups[0]["lr"]}
                        self.logger.log(record | ({"train/samples_per_s": speed} if speed else {}))
                    stopping = acc.any(self.stop.requested)
                    if stopping or (cfg.checkpoint_every_n_steps and at.step % cfg.checkpoint_every_n_steps == 0):
                        self._save_last(Position(epoch, i, at.step, float(loss_sum), seen, at.best,
                                                 at.best_metrics, at.stale, layout))
                    if stopping:
                        raise RunInterrupted(f"stopped by a signal at step {at.step}; checkpoint saved")
                    if at.step >= total_steps:
                        break
                self._sync()
                if timer is not None:
                    timed_seconds += time.perf_counter() - timer
                    timed_samples += epoch_samples

                total_loss, total_seen = acc.sum(torch.stack([loss_sum, torch.tensor(float(seen), device=acc.device)]))
                train_metrics = {"train/loss": float(total_loss / total_seen.clamp(min=1))}
                self.logger.log({"step": at.step, "epoch": epoch, "split": "train", **train_metrics})
                val_metrics = {}
                if cfg.validate and val_loader is not None and (epoch % cfg.val_every == 0 or epoch == epochs):
                    val_metrics = evaluate(self.ema or self.step_model, val_loader, self.loss_fn, acc, self.info, "val",
                                           progress.evaluation(f"epoch {epoch}/{epochs} val", len(val_loader)))
                    self.logger.log({"step": at.step, "epoch": epoch, "split": "val", **val_metrics})
                    value = val_metrics[self.monitor]
                    best = at.best["value"] if at.best else None
                    if best is None or (value > best if mode == "max" else value < best):
                        at.best = {"monitor": self.monitor, "value": value, "epoch": epoch, "mode": mode}
                        at.best_metrics = val_metrics
                        self._save_weights(self.run.best_weights, epoch=epoch, step=at.step,
                                           monitor=self.monitor, value=value)
                    gain = (value - best if mode == "max" else best - value) if best is not None else math.inf
                    at.stale = 0 if gain > cfg.early_stopping_min_delta else at.stale + 1
                    plateau = self._plateau
                    if plateau is not None and plateau.observe(value, mode):
                        times = "in the last validation" if plateau.patience == 1 else \
                            f"in {plateau.patience} validations"
                        console.print(f"scheduler=plateau: {self.monitor} did not improve {times} (best: "
                                      f"{figure(plateau.best)}); the LR drops to {lower_now(self.scheduler):.3g}",
                                      soft_wrap=True)
                if cfg.save_every_n_epochs and epoch % cfg.save_every_n_epochs == 0:
                    self._save_weights(self.run.epoch_weights(epoch), epoch=epoch, step=at.step)
                # max_steps may end the run mid-epoch: a later resume (with more steps) goes on from there.
                self._save_last(Position(epoch + 1, 0, at.step, 0.0, 0, at.best, at.best_metrics, at.stale)
                                if i == batches else
                                Position(epoch, i, at.step, float(loss_sum), seen, at.best, at.best_metrics, at.stale,
                                         layout))
                progress.end_epoch({**train_metrics, **val_metrics}, self.monitor)
                if cfg.early_stopping_patience and at.stale >= cfg.early_stopping_patience:
                    console.print(f"early stopping after epoch {epoch}/{epochs}: {self.monitor} has not improved by "
                                  f"more than {cfg.early_stopping_min_delta} for {at.stale} validations (best: "
                                  f"{figure(at.best['value'])}, epoch {at.best['epoch']})")
                    stopped_early = True
                    break
                if at.step >= total_steps:
                    break
        finally:
            progress.close()
            gc.unfreeze()
        return FitResult({**train_metrics, **at.best_metrics}, at.best, epoch, at.step, timed_seconds,
                         timed_samples, stopped_early, first_step_at)

    @property
    def _plateau(self):
        """scheduler=plateau's state, which validations feed (onecycle's scheduler is torch's own: none)."""
        return getattr(self.scheduler, "plateau", None)

    def _weights_module(self) -> nn.Module:
        """What best/epoch checkpoints hold: the EMA weights when EMA is on."""
        return self.ema.module if self.ema is not None else self.model

    def _save_weights(self, path, **metadata) -> None:
        tensors = self.acc.model_state(self._weights_module())  # every process: FSDP gathers
        if self.acc.is_main:
            checkpoint.save_weights(path, tensors, **metadata)
        self.acc.barrier()

    def _save_last(self, at: Position) -> None:
        state = {
            "epoch_done": at.epoch - 1, "step": at.step, "position": dataclasses.asdict(at),
            "optimizer": self.acc.optimizer_state(self.model, self.optimizer),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "rng": rng_state(),
            # which parameters started pretrained (frozen, their own LR): a resume needs no pretrained source
            "pretrained": sorted(pretrained_parameters(self.model)),
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self._plateau is not None:
            state["plateau"] = self._plateau.state_dict()
        tensors = self.acc.model_state(self.model)
        if self.acc.is_main:
            checkpoint.save_last(self.run, tensors, state)
        self.acc.barrier()

    def _layout(self, train_loader: DataLoader) -> dict:
        """What a count of batches done means: checked when a checkpoint from mid-epoch resumes."""
        return {"data.batch_size": train_loader.batch_size * self.acc.world_size, "trainer.devices": self.acc.world_size,
                "trainer.accumulate_grad_batches": self.cfg.accumulate_grad_batches,
                "data.group_by_length": train_loader.sampler.lengths is not None}

    def restore(self, state: dict, train_loader: DataLoader) -> Position:
        """Load a `last` checkpoint's state (the weights are loaded by the caller). The checkpoint
        brings what training accumulated (the optimizer's moments, the step, the RNG); the settings
        are this command's: its optimizer's hyperparameters and its schedule over its own length, so
        a resume may change optimizer.lr or ask for more epochs."""
        at = Position(**state["position"])
        _check_same_batching(at, self._layout(train_loader))
        settings = [{k: v for k, v in group.items() if k != "params"} for group in self.optimizer.param_groups]
        self.acc.load_optimizer_state(self.model, self.optimizer, state["optimizer"])
        for group, own in zip(self.optimizer.param_groups, settings):
            group.update(own)
        if self._plateau is not None and "plateau" in state:  # (before the LR is set from it)
            self._plateau.load_state_dict(state["plateau"])
        continue_schedule(self.scheduler, state["scheduler"])
        if state["scaler"]:  # (none from a run without fp16: an fp16 resume starts its loss scale afresh)
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])
        set_rng_state(state["rng"])
        return at

    def _sync(self) -> None:
        if self.acc.device.type == "cuda":
            torch.cuda.synchronize()
