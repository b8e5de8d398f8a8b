"""The training loop, in parts a reader sees whole: `Trainer.fit` is the epoch loop; it calls
`train_epoch` (the step loop), `validate`, and `end_epoch` (best checkpoint, plateau, periodic saves,
early stopping). `evaluate` streams a loader through the task's metrics."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
import math
import signal
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader

from ftool.callbacks import Callbacks
from ftool.config import TrainerConfig
from ftool.data import DataInfo
from ftool.engine import checkpoint
from ftool.engine.accelerator import Accelerator
from ftool.engine.progress import Bar, figure, note, warn
from ftool.engine.seeding import rng_state, set_rng_state
from ftool.errors import ConfigError, FtoolError, RunInterrupted
from ftool.finetune import pretrained_parameters, set_trainable
from ftool.metrics import EpochMeter, monitor_mode
from ftool.optim import continue_schedule, l1_penalty, lower_now
from ftool.rundir import RunDir


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
    top: list = field(default_factory=list)  # trainer.save_top_k > 1: [value, file name] of the kept, best first
    layout: dict | None = None  # mid-epoch: the batching `batch` counts in (a resume must batch alike)


def plan_steps(cfg: TrainerConfig, steps_per_epoch: int, at: Position | None = None) -> tuple[int, int]:
    """(last epoch, optimizer steps in all): `max_steps` wins over `epochs`. A resumed run counts the steps
    made before its epoch, then `steps_per_epoch` for the rest (the batching may change between epochs)."""
    at = at or Position()
    before = at.step - math.ceil(at.batch / cfg.accumulate_grad_batches)
    if cfg.max_steps > 0:
        return at.epoch - 1 + math.ceil((cfg.max_steps - before) / steps_per_epoch), cfg.max_steps
    return cfg.epochs, before + (cfg.epochs - at.epoch + 1) * steps_per_epoch


def batches_per_epoch(loader: DataLoader, cfg: TrainerConfig) -> int:
    """The training batches an epoch: this process's share of the data, capped by trainer.limit_train_batches."""
    return limited(math.ceil(loader.sampler.per_rank / loader.batch_size), cfg.limit_train_batches)


def limited(batches: int, limit: int) -> int:
    """`batches`, at most `limit` of them where a trainer.limit_*_batches is set (> 0)."""
    return min(batches, limit) if limit > 0 else batches


class StopFlag:
    """SIGINT/SIGTERM only set this flag; the loop checks it between steps (all processes agree), then
    saves and stops. A second Ctrl-C stops at once."""

    requested = False

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
def evaluate(model: nn.Module, loader: DataLoader, loss_fn: nn.Module, acc: Accelerator, info: DataInfo,
             prefix: str, bar: Bar | None = None, meter: EpochMeter | None = None,
             names: list[str] | None = None, limit: int = 0) -> dict[str, float]:
    """Loss and metrics (`names`: trainer.metrics) over `loader` (its first `limit` batches, if > 0),
    accumulated batch by batch and summed across processes."""
    model.eval()
    meter = meter or EpochMeter(info, acc.device, names)
    batches = limited(len(loader), limit)
    # Every FSDP forward gathers parameters: a process with fewer batches joins the others' last ones.
    extra = acc.max(batches) - batches if acc.sharded else 0
    if bar:
        bar.start(prefix, batches)
    x = None
    for i, batch in enumerate(itertools.islice(loader, batches), 1):
        x, y = acc.to_device(batch)
        with acc.autocast():
            out = model(x)
            meter.update(loss_fn(out, y), out, y)
        if bar:
            bar.advance(i)
    for _ in range(extra):
        with acc.autocast():
            model(x)
    if bar:
        bar.done()
    return meter.compute(prefix, acc)


class Timer:
    """Training seconds and samples, from the end of each process's first (warm-up) step on."""

    def __init__(self, sync):
        self.sync, self.seconds, self.samples = sync, 0.0, 0
        self.since = self.first_step_at = None

    def step_done(self, samples: int) -> None:
        if self.first_step_at is None:  # the first step warms up (allocations, compilation): untimed
            self.sync()
            self.since = self.first_step_at = time.perf_counter()
        else:
            self.samples += samples

    def epoch_started(self) -> None:
        if self.first_step_at is not None:
            self.since = time.perf_counter()

    def epoch_ended(self) -> None:
        if self.since is not None:
            self.sync()
            self.seconds, self.since = self.seconds + time.perf_counter() - self.since, None

    def speed(self) -> float | None:
        elapsed = self.seconds + (time.perf_counter() - self.since if self.since else 0.0)
        return self.samples / elapsed if self.samples and elapsed else None


class NonFinite:
    """trainer.on_nonfinite: `stop` at a non-finite loss, naming the step; `skip` the step, until
    DIVERGED_AFTER in a row say the model has diverged (skipping cannot undo that)."""

    DIVERGED_AFTER = 10

    def __init__(self, policy: str):
        self.policy, self.in_row = policy, 0

    def skip(self, bad: bool, step: int, epoch: int) -> bool:
        if not bad:
            self.in_row = 0
            return False
        self.in_row += 1
        if self.policy == "stop" or self.in_row == self.DIVERGED_AFTER:
            raise FtoolError(f"training stopped: non-finite loss at step {step} (epoch {epoch})"
                             + ("; trainer.on_nonfinite=skip skips such steps" if self.policy == "stop" else
                                f", the {self.in_row}th in a row: the model diverged; a lower optimizer.lr "
                                f"or trainer.grad_clip=1.0 keeps it from diverging"))
        warn(f"step {step}: non-finite loss, step skipped")
        return True


@dataclass
class FitResult:
    metrics: dict[str, float]  # the last epoch's train loss and the best epoch's validation metrics
    best: dict | None
    epochs: int
    steps: int
    train_seconds: float
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
    unfreeze: tuple[int, list[str]] | None = None  # (epoch, frozen parameter names): they train from then on
    callbacks: Callbacks = field(default_factory=lambda: Callbacks({}, None))

    def __post_init__(self):
        self.scaler = self.acc.grad_scaler()
        self.mode = monitor_mode(self.monitor, self.cfg.mode)
        self.plateau = getattr(self.scheduler, "plateau", None)  # scheduler=plateau's state, fed by validations

    def fit(self, train: DataLoader, val: DataLoader | None, at: Position | None = None) -> FitResult:
        at = at or Position()
        self.batches, self.layout = batches_per_epoch(train, self.cfg), self._layout(train)
        self.epochs, self.total_steps = plan_steps(self.cfg, math.ceil(self.batches / self.cfg.accumulate_grad_batches), at)
        self.bar, self.timer, self.nonfinite = Bar(self.cfg.progress), Timer(self._sync), NonFinite(self.cfg.on_nonfinite)
        metrics, stopped, epoch = {}, False, at.epoch - 1
        # What is built so far lives for the whole run: keep the cyclic GC from re-scanning it (a full
        # collection over torch's and Hydra's objects stalls a step for ~0.2 s).
        gc.collect()
        gc.freeze()
        self.callbacks("on_fit_start", self)
        try:
            for epoch in range(at.epoch, self.epochs + 1) if at.step < self.total_steps else ():
                self._unfreeze_at(epoch)
                metrics = self.train_epoch(train, epoch, at)
                due = val is not None and self.cfg.validate and (epoch % self.cfg.val_every == 0 or epoch == self.epochs)
                stopped = self.end_epoch(epoch, at, metrics, self.validate(val, epoch, at.step) if due else {})
                if stopped or at.step >= self.total_steps:
                    break
        except BaseException as e:
            self.callbacks("on_exception", self, e)
            raise
        finally:
            self.bar.close()
            gc.unfreeze()
        result = FitResult({**metrics, **at.best_metrics}, at.best, epoch, at.step, self.timer.seconds,
                           self.timer.samples, stopped, self.timer.first_step_at)
        self.callbacks("on_fit_end", self, result)
        return result

    def train_epoch(self, loader: DataLoader, epoch: int, at: Position) -> dict[str, float]:
        """The epoch's steps, from batch `at.batch` on (a resumed run); returns its train loss."""
        acc, accum = self.acc, self.cfg.accumulate_grad_batches
        loader.sampler.set_epoch(epoch, at.batch * loader.batch_size)
        self.step_model.train()
        self.bar.start(f"epoch {epoch}/{self.epochs}", min(self.batches, at.batch + (self.total_steps - at.step) * accum),
                       at.batch)
        self.timer.epoch_started()
        group_bad, group_samples = False, 0
        for i, batch in enumerate(loader, at.batch + 1):
            x, y = acc.to_device(batch)
            steps_now = i % accum == 0 or i == self.batches  # the group's last batch
            loss = self._backward(x, y, i, loader, steps_now)
            value = loss.item()  # (one read of the loss: a CPU step pays ~30 us for each tensor op on it)
            group_bad |= not math.isfinite(value)
            at.loss_sum += value * len(y)
            at.seen, at.batch, group_samples = at.seen + len(y), i, group_samples + len(y)
            if not steps_now:
                continue
            self._optimizer_step(skip=self.nonfinite.skip(acc.any(group_bad), at.step + 1, epoch))
            at.step, group_bad = at.step + 1, False
            self.timer.step_done(group_samples * acc.world_size)
            group_samples = 0
            if at.step % self.cfg.log_every_n_steps == 0 or at.step == self.total_steps or i == self.batches:
                self._log_step(value, epoch, i, at.step)
            self.callbacks("on_train_batch_end", self, at.step, loss)
            self._save_if_asked(at)
            if at.step >= self.total_steps or i == self.batches:  # (trainer.limit_train_batches)
                break
        self.timer.epoch_ended()
        total_loss, seen = acc.sum(torch.tensor([at.loss_sum, float(at.seen)], device=acc.device)).tolist()
        metrics = {"train/loss": total_loss / max(seen, 1)}
        self.logger.log({"step": at.step, "epoch": epoch, "split": "train", **metrics})
        return metrics

    def _backward(self, x, y, i: int, loader: DataLoader, sync: bool) -> torch.Tensor:
        """One batch's forward and backward, weighted by its share of its group of `accumulate_grad_batches`:
        the step's gradient is the mean over the group's samples, as one big batch's (the last may be short)."""
        accum, size = self.cfg.accumulate_grad_batches, loader.batch_size
        group_samples = min(accum * size, loader.sampler.per_rank - (i - 1) // accum * accum * size)
        with self.acc.gradient_sync(sync):
            with self.acc.autocast():
                loss = self.loss_fn(self.step_model(x), y)
                objective = loss + self.l1 * l1_penalty(self.model) if self.l1 else loss
            self.scaler.scale(objective * (len(y) / group_samples)).backward()
        return loss

    def _optimizer_step(self, skip: bool) -> None:
        if not skip:
            if self.cfg.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                clip = nn.utils.clip_grad_norm_ if self.cfg.grad_clip_algorithm == "norm" else nn.utils.clip_grad_value_
                clip(self.model.parameters(), self.cfg.grad_clip)
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.scaler.get_scale() >= scale:  # a step the fp16 scaler skipped must not advance the LR
                self.scheduler.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
        self.optimizer.zero_grad(set_to_none=True)

    def _log_step(self, value: float, epoch: int, batch: int, step: int) -> None:
        speed = self.timer.speed()
        self.bar.advance(batch, f"loss {figure(value)} {f'{speed:,.0f}' if speed else '-'} samples/s")
        self.logger.log({"step": step, "epoch": epoch, "split": "train", "train/loss_step": value,
                         "lr": self.optimizer.param_groups[0]["lr"], **({"train/samples_per_s": speed} if speed else {})})

    def _save_if_asked(self, at: Position) -> None:
        """A signal saves `last` and stops; trainer.checkpoint_every_n_steps saves it now and then."""
        stopping = self.acc.any(self.stop.requested)
        every = self.cfg.checkpoint_every_n_steps
        if stopping or (every and at.step % every == 0):
            self._save_last(at)
        if stopping:
            raise RunInterrupted(f"stopped by a signal at step {at.step}; checkpoint saved")

    def validate(self, loader: DataLoader, epoch: int, step: int) -> dict[str, float]:
        """The validation split's metrics, of the EMA weights where there are some."""
        metrics = evaluate(self.ema or self.step_model, loader, self.loss_fn, self.acc, self.info, "val", self.bar,
                           names=self.cfg.metrics, limit=self.cfg.limit_val_batches)
        self.logger.log({"step": step, "epoch": epoch, "split": "val", **metrics})
        self.callbacks("on_validation_end", self, metrics)
        return metrics

    def end_epoch(self, epoch: int, at: Position, train: dict, val: dict) -> bool:
        """Best checkpoint, plateau, periodic and `last` saves; returns whether early stopping stops the run."""
        if val:
            self._judge(val, epoch, at)
        if self.cfg.save_every_n_epochs and epoch % self.cfg.save_every_n_epochs == 0:
            self._save_weights(self.run.epoch_weights(epoch), epoch=epoch, step=at.step)
        if at.batch == self.batches:  # (max_steps may end the run mid-epoch: a longer resume goes on from there)
            at.epoch, at.batch, at.loss_sum, at.seen = epoch + 1, 0, 0.0, 0
        self._save_last(at)
        shown = {k: v for k, v in {**train, **val}.items() if k in ("train/loss", "val/loss", self.monitor)}
        self.bar.done(f"epoch {epoch}/{self.epochs}  " + "  ".join(f"{k} {figure(v)}" for k, v in shown.items()))
        if self.cfg.early_stopping_patience and at.stale >= self.cfg.early_stopping_patience:
            note(f"early stopping after epoch {epoch}/{self.epochs}: {self.monitor} has not improved by more than "
                 f"{self.cfg.early_stopping_min_delta} for {at.stale} validations (best: "
                 f"{figure(at.best['value'])}, epoch {at.best['epoch']})")
            return True
        return False

    def _judge(self, val: dict, epoch: int, at: Position) -> None:
        """A validation's monitored value: a new best is saved; early stopping and plateau count the rest."""
        value, best = val[self.monitor], at.best["value"] if at.best else None
        gain = math.inf if best is None else (value - best if self.mode == "max" else best - value)
        if gain > 0:
            at.best, at.best_metrics = {"monitor": self.monitor, "value": value, "epoch": epoch, "mode": self.mode}, val
            self._save_weights(self.run.best_weights, epoch=epoch, step=at.step, monitor=self.monitor, value=value)
        if self.cfg.save_top_k > 1:
            self._keep_top(value, epoch, at)
        at.stale = 0 if gain > self.cfg.early_stopping_min_delta else at.stale + 1
        if self.plateau is not None and self.plateau.observe(value, self.mode):
            note(f"scheduler=plateau: {self.monitor} did not improve in {self.plateau.patience} validation(s) "
                 f"(best: {figure(self.plateau.best)}); the LR drops to {lower_now(self.scheduler):.3g}")

    def _keep_top(self, value: float, epoch: int, at: Position) -> None:
        """trainer.save_top_k: this epoch's weights kept as epoch=E-<monitor>=<value> while among the k best."""
        name = f"epoch={epoch}-{self.monitor.replace('/', '_')}={value:.4f}.safetensors"
        ranked = sorted([*at.top, [value, name]], key=lambda kept: kept[0], reverse=self.mode == "max")
        at.top, dropped = ranked[:self.cfg.save_top_k], ranked[self.cfg.save_top_k:]
        folder = self.run.best_weights.parent
        if [value, name] in at.top:
            self._save_weights(folder / name, epoch=epoch, step=at.step, monitor=self.monitor, value=value)
        for _, old in dropped if self.acc.is_main else ():
            (folder / old).unlink(missing_ok=True)

    def _unfreeze_at(self, epoch: int) -> None:
        if self.unfreeze and epoch >= self.unfreeze[0]:
            set_trainable(self.model, self.unfreeze[1], True)
            note(f"finetune: epoch {epoch}: {len(self.unfreeze[1])} frozen parameters now train")
            self.unfreeze = None

    def _save_weights(self, path, **metadata) -> None:
        """Best and epoch checkpoints: the EMA weights where there are some. Every process: FSDP gathers."""
        tensors = self.acc.model_state(self.ema.module if self.ema is not None else self.model)
        if self.acc.is_main:
            checkpoint.save_weights(path, tensors, **metadata)
        self.acc.barrier()

    def _save_last(self, at: Position) -> None:
        position = dataclasses.replace(at, layout=self.layout if at.batch else None)
        state = {"epoch_done": at.epoch - 1, "step": at.step, "position": dataclasses.asdict(position),
                 "optimizer": self.acc.optimizer_state(self.model, self.optimizer),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "rng": rng_state(),
                 # the parameters that started pretrained (frozen, their own LR): a resume needs no source
                 "pretrained": sorted(pretrained_parameters(self.model)),
                 **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
                 **({"plateau": self.plateau.state_dict()} if self.plateau is not None else {})}
        tensors = self.acc.model_state(self.model)
        if self.acc.is_main:
            checkpoint.save_last(self.run, tensors, state)
        self.acc.barrier()

    def _layout(self, loader: DataLoader) -> dict:
        """What a count of batches done means: a checkpoint from mid-epoch resumes only batched alike."""
        return {"data.batch_size": loader.batch_size * self.acc.world_size, "trainer.devices": self.acc.world_size,
                "trainer.accumulate_grad_batches": self.cfg.accumulate_grad_batches,
                "data.group_by_length": loader.sampler.lengths is not None}

    def restore(self, state: dict, loader: DataLoader) -> Position:
        """Load a `last` checkpoint's state (the caller loads its weights): what training accumulated (the
        optimizer's moments, the step, the RNG). The settings stay this command's: its optimizer's, and its
        schedule over its own length, so a resume may change optimizer.lr or ask for more epochs."""
        at = Position(**state["position"])
        changed = {k: v for k, v in (at.layout or {}).items() if self._layout(loader).get(k) != v}
        if at.batch and changed:
            raise ConfigError(f"trainer.resume: the checkpoint is from the middle of epoch {at.epoch}, batched with "
                              f"{', '.join(f'{k}={v}' for k, v in changed.items())}; resume with those settings")
        settings = [{k: v for k, v in group.items() if k != "params"} for group in self.optimizer.param_groups]
        self.acc.load_optimizer_state(self.model, self.optimizer, state["optimizer"])
        for group, own in zip(self.optimizer.param_groups, settings):
            group.update(own)
        if self.plateau is not None and "plateau" in state:  # (before the LR is set from it)
            self.plateau.load_state_dict(state["plateau"])
        continue_schedule(self.scheduler, state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])
        set_rng_state(state["rng"])
        return at

    def _sync(self) -> None:
        if self.acc.device.type == "cuda":
            torch.cuda.synchronize()
