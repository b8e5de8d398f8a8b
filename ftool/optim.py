"""Optimizers with weight decay on weights only, an L1 penalty, and per-step LR schedules."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.optimizer import _get_fused_kernels_supported_devices

from ftool.registry import OPTIMIZERS, SCHEDULERS


@OPTIMIZERS.register("sgd")
def sgd(params, lr, weight_decay, momentum: float = 0.9, nesterov: bool = False):
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                           **_fused(params))


@OPTIMIZERS.register("adam")
def adam(params, lr, weight_decay, betas: list = (0.9, 0.999), eps: float = 1e-8):
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas), eps=eps, **_fused(params))


@OPTIMIZERS.register("adamw")
def adamw(params, lr, weight_decay, betas: list = (0.9, 0.999), eps: float = 1e-8):
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas), eps=eps, **_fused(params))


def _fused(groups: list[dict]) -> dict:
    """torch's fused kernels where every parameter has one: on a CPU torch's default steps one
    parameter at a time, and there AdamW's step took 94 ms of MiniLM's 549 ms training step (fused: 16
    ms; scripts/bench_optimizer.py). A device without them keeps torch's default."""
    from torch.distributed.tensor import DTensor  # (FSDP's shards: no fused kernels)

    supported = _get_fused_kernels_supported_devices()
    tensors = [p for group in groups for p in group["params"]]
    if tensors and all(p.device.type in supported and torch.is_floating_point(p) and not isinstance(p, DTensor)
                       for p in tensors):
        return {"fused": True}
    return {}


def decay_groups(model: nn.Module, weight_decay: float, lr: float, lr_mult: dict[str, float] | None = None) -> list[dict]:
    """Parameter groups: weights (matrices, conv kernels) decay, biases and norm layers don't; and
    parameters named in `lr_mult` (fine-tuning's pretrained layers) get that multiple of the LR.
    Frozen parameters are included: they have no gradient, so optimizers skip them until
    finetune.unfreeze_at_epoch lets them train."""
    groups: dict[tuple[bool, float], list] = {}
    for name, p in model.named_parameters():
        groups.setdefault((p.ndim >= 2, (lr_mult or {}).get(name, 1.0)), []).append(p)
    keys = sorted(groups, key=lambda k: (not k[0], -k[1])) or [(True, 1.0)]
    return [{"params": groups.get(k, []), "weight_decay": weight_decay if k[0] else 0.0, "lr": lr * k[1]}
            for k in keys]


def build_optimizer(cfg, model: nn.Module, lr_mult: dict[str, float] | None = None):
    return OPTIMIZERS.build(cfg.name, cfg.args, params=decay_groups(model, cfg.weight_decay, cfg.lr, lr_mult),
                            lr=cfg.lr, weight_decay=cfg.weight_decay)


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of |w| over the same weights that L2 decay applies to."""
    return sum(p.abs().sum() for p in model.parameters() if p.requires_grad and p.ndim >= 2)


# Schedules are multipliers of the base LR as a function of the optimizer step.
@SCHEDULERS.register("none")
def constant(total_steps, steps_per_epoch):
    return lambda step: 1.0


@SCHEDULERS.register("cosine")
def cosine(total_steps, steps_per_epoch, min_lr_ratio: float = 0.0):
    return lambda step: min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(step / total_steps, 1.0)))


@SCHEDULERS.register("linear")
def linear_decay(total_steps, steps_per_epoch):
    return lambda step: max(0.0, 1.0 - step / total_steps)


@SCHEDULERS.register("step")
def step_decay(total_steps, steps_per_epoch, step_size: int = 10, gamma: float = 0.1):
    """Multiply the LR by `gamma` every `step_size` epochs."""
    return lambda step: gamma ** (step // (step_size * steps_per_epoch))


@SCHEDULERS.register("onecycle")
def onecycle(total_steps, steps_per_epoch, pct_start: float = 0.3, div_factor: float = 25.0,
             final_div_factor: float = 1e4):
    """Marker for torch's OneCycleLR (built in `build_scheduler`: it also cycles momentum)."""
    return {"pct_start": pct_start, "div_factor": div_factor, "final_div_factor": final_div_factor}


@SCHEDULERS.register("plateau")
def plateau(total_steps, steps_per_epoch, factor: float = 0.1, patience: int = 2, min_lr_ratio: float = 0.0):
    return Plateau(factor, patience, min_lr_ratio)


class Plateau:
    """`scheduler=plateau`: the LR times `factor` once trainer.monitor has not improved for `patience`
    validations (Keras' and torch's ReduceLROnPlateau), never below `min_lr_ratio` of optimizer.lr.
    The trainer tells it each validation's value (`observe`); its scale multiplies the warmup."""

    def __init__(self, factor: float, patience: int, min_lr_ratio: float):
        self.factor, self.patience, self.floor = factor, patience, min_lr_ratio
        self.scale, self.best, self.stale = 1.0, None, 0

    def __call__(self, step: int) -> float:
        return self.scale

    def observe(self, value: float, mode: str) -> bool:
        """Count a validation's value; True when the LR drops."""
        if self.best is None or (value > self.best if mode == "max" else value < self.best):
            self.best, self.stale = value, 0
            return False
        self.stale += 1
        if self.stale < self.patience or self.scale <= self.floor:
            return False
        self.scale, self.stale = max(self.floor, self.scale * self.factor), 0
        return True

    def state_dict(self) -> dict:
        return {"scale": self.scale, "best": self.best, "stale": self.stale}

    def load_state_dict(self, state: dict) -> None:
        self.scale, self.best, self.stale = state["scale"], state["best"], state["stale"]


def warmup_steps(cfg, steps_per_epoch: int) -> int:
    return round(cfg.warmup_epochs * steps_per_epoch)


def build_scheduler(cfg, optimizer: torch.optim.Optimizer, total_steps: int,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A scheduler stepped once per optimizer step, with `warmup_epochs` of linear warmup; one that takes the
    optimizer (torch's, by `_target_`) as it is."""
    if "optimizer" in SCHEDULERS.parameters(cfg.name):
        return SCHEDULERS.build(cfg.name, cfg.args, optimizer=optimizer, total_steps=total_steps,
                                steps_per_epoch=steps_per_epoch)
    warmup = warmup_steps(cfg, steps_per_epoch)
    schedule = SCHEDULERS.build(cfg.name, cfg.args, total_steps=max(1, total_steps - warmup),
                                steps_per_epoch=steps_per_epoch)
    if cfg.name == "onecycle":
        if warmup:  # onecycle's own warmup is its first phase
            schedule["pct_start"] = min(0.99, warmup / total_steps)
        max_lr = [g["lr"] for g in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=max(2, total_steps),
                                                   **schedule)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1) * (schedule.scale if isinstance(schedule, Plateau) else 1.0)
        return schedule(step - warmup)

    return ScheduleLR(optimizer, factor, schedule if isinstance(schedule, Plateau) else None)


class ScheduleLR(torch.optim.lr_scheduler.LambdaLR):
    """LambdaLR, holding the schedule's `Plateau` where it has one: the trainer feeds it validations and
    saves its state beside the scheduler's (whose state_dict would pickle the object itself)."""

    def __init__(self, optimizer: torch.optim.Optimizer, factor, plateau: Plateau | None):
        self.plateau = plateau
        super().__init__(optimizer, factor)

    def state_dict(self) -> dict:
        return {key: value for key, value in super().state_dict().items() if key != "plateau"}


def lower_now(scheduler: torch.optim.lr_scheduler.LambdaLR) -> float:
    """Set the optimizer's LR to the schedule's at its current step, as `scheduler.step()` would at
    the next step: a plateau's drop applies from the next batch on. Returns the (first group's) LR."""
    lrs = [base * f(scheduler.last_epoch) for base, f in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    for group, lr in zip(scheduler.optimizer.param_groups, lrs):
        group["lr"] = lr
    scheduler._last_lr = lrs
    return lrs[0]


def continue_schedule(scheduler: torch.optim.lr_scheduler.LRScheduler, saved: dict) -> None:
    """Put `scheduler` at the step a checkpoint's scheduler state was at, keeping its own schedule
    (this run's settings and length: onecycle's saved state would bring the old run's), and set the
    optimizer's LR (and onecycle's momentum) for that step."""
    own = scheduler.state_dict()
    scheduler.load_state_dict({**own, "last_epoch": saved["last_epoch"] - 1, "_step_count": saved["_step_count"]})
    scheduler.step()  # to the saved step (torch warns only at a scheduler's first step)
