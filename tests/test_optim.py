import math
import re

import pytest
import torch
from torch import nn

from ftool.config import OptimizerConfig, SchedulerConfig
from ftool.errors import FtoolError
from ftool.optim import build_optimizer, build_scheduler, l1_penalty


def model():
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))


def test_weight_decay_applies_to_weights_not_biases_or_norm_layers():
    m = model()
    opt = build_optimizer(OptimizerConfig(name="adamw", lr=0.1, weight_decay=0.5), m)
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.5 and plain["weight_decay"] == 0.0
    assert {id(p) for p in decayed["params"]} == {id(m[0].weight), id(m[2].weight)}
    assert {id(p) for p in plain["params"]} == {id(m[0].bias), id(m[1].weight), id(m[1].bias), id(m[2].bias)}


def test_sgd_options_reach_torch():
    opt = build_optimizer(OptimizerConfig(name="sgd", lr=0.1, args={"momentum": 0.8, "nesterov": True}), model())
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["momentum"] == 0.8 and opt.defaults["nesterov"] is True


@pytest.mark.parametrize("name, torch_optimizer", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                                    ("adamw", torch.optim.AdamW)])
def test_optimizers_step_with_torchs_fused_kernels_as_its_default_steps(name, torch_optimizer):
    torch.manual_seed(0)
    # (no BatchNorm: the bias before it has a gradient of rounding noise, which Adam scales up to lr-sized steps)
    ours, theirs = (nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)) for _ in range(2))
    theirs.load_state_dict(ours.state_dict())
    opt = build_optimizer(OptimizerConfig(name=name, lr=0.01, weight_decay=0.1), ours)
    assert opt.defaults["fused"] is True  # (on a CPU AdamW steps MiniLM 5.9x faster: scripts/bench_optimizer.py)
    settings = {"momentum": 0.9} if name == "sgd" else {}
    reference = torch_optimizer([{"params": [dict(theirs.named_parameters())[n] for n in names], "lr": g["lr"],
                                  "weight_decay": g["weight_decay"]}
                                 for g, names in zip(opt.param_groups, _names(ours, opt))], **settings)
    assert not reference.defaults["fused"]  # torch's default: a parameter at a time on the CPU
    x = torch.randn(16, 4)
    for _ in range(5):
        for m, o in ((ours, opt), (theirs, reference)):
            o.zero_grad()
            m(x).square().mean().backward()
            o.step()
    for (n, a), b in zip(ours.named_parameters(), theirs.parameters()):
        assert torch.allclose(a, b, atol=1e-6), n


def _names(m: nn.Module, opt: torch.optim.Optimizer) -> list[list[str]]:
    by_id = {id(p): n for n, p in m.named_parameters()}
    return [[by_id[id(p)] for p in g["params"]] for g in opt.param_groups]


@pytest.mark.parametrize("name, args, message", [
    ("sgd", {"momentum": 1.5}, "optimizer.momentum: must be in [0, 1), got 1.5"),  # trained to a NaN loss
    ("adam", {"betas": [0.9]}, "optimizer.betas: must be two numbers, [beta1, beta2] (default [0.9, 0.999]), got [0.9]"),
    ("adamw", {"betas": [0.9, 0.99, 0.9]}, "optimizer.betas: must be two numbers"),  # torch: at the first step
    ("adam", {"eps": 0.0}, "optimizer.eps: must be > 0 (default 1e-8), got 0.0"),  # trained to a NaN loss
])
def test_optimizer_settings_torch_would_take_into_nonsense_are_errors(name, args, message):
    with pytest.raises(FtoolError, match=re.escape(message)):
        build_optimizer(OptimizerConfig(name=name, lr=0.1, args=args), model())


def test_l1_penalty_sums_absolute_weights():
    m = nn.Linear(2, 1)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[1.5, -2.0]]))
        m.bias.fill_(7.0)
    assert l1_penalty(m).item() == pytest.approx(3.5)


def lrs(scheduler_cfg, total=10, per_epoch=5, lr=1.0):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    sched = build_scheduler(scheduler_cfg, opt, total, per_epoch)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_then_cosine_decay():
    values = lrs(SchedulerConfig(name="cosine", warmup_epochs=0.4), total=10, per_epoch=5)
    assert values[:2] == pytest.approx([1 / 3, 2 / 3])  # 2 warmup steps
    assert values[2] == pytest.approx(1.0)
    assert values[2 + 4] == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert all(a >= b for a, b in zip(values[2:], values[3:]))


def test_step_schedule_decays_every_step_size_epochs():
    values = lrs(SchedulerConfig(name="step", args={"step_size": 1, "gamma": 0.5}), total=10, per_epoch=5)
    assert values == pytest.approx([1.0] * 5 + [0.5] * 5)


@pytest.mark.parametrize("name, args, message", [
    ("step", {"gamma": -1.0}, "scheduler.gamma: must be > 0, got -1.0"),  # a negative LR climbs the loss
    ("step", {"step_size": 0}, "scheduler.step_size: must be >= 1 epoch, got 0"),
    ("cosine", {"min_lr_ratio": 2.0}, "scheduler.min_lr_ratio: must be in [0, 1] (of optimizer.lr), got 2.0"),
    ("onecycle", {"pct_start": 2.0}, "scheduler.pct_start: must be in (0, 1)"),  # torch's traceback, before
    ("onecycle", {"div_factor": 0.0}, "scheduler.div_factor: must be > 0, got 0.0"),
    ("plateau", {"factor": 1.0}, "scheduler.factor: must be in (0, 1) (what the LR is multiplied by), got 1.0"),
    ("plateau", {"patience": 0}, "scheduler.patience: must be >= 1 validation, got 0"),
])
def test_schedule_settings_out_of_range_are_errors(name, args, message):
    with pytest.raises(FtoolError, match=re.escape(message)):
        lrs(SchedulerConfig(name=name, args=args))


def test_onecycle_is_torchs_and_peaks_at_the_optimizer_lr():
    values = lrs(SchedulerConfig(name="onecycle", args={"pct_start": 0.3}), total=20, per_epoch=5, lr=0.1)
    assert max(values) == pytest.approx(0.1, rel=1e-3)
    assert values[0] == pytest.approx(0.1 / 25)


def test_plateau_lowers_the_lr_after_patience_validations_without_a_better_value(tmp_path):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(SchedulerConfig(name="plateau", warmup_epochs=1,
                                            args={"factor": 0.5, "patience": 2, "min_lr_ratio": 0.2}), opt, 100, 2)
    plateau, seen = sched.plateau, []
    for step, value in enumerate([0.5, 0.6, 0.6, 0.55, 0.7, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]):  # one validation a step
        opt.step()
        sched.step()
        seen.append((plateau.observe(value, "max"), plateau.scale))
    # equal to the best is no improvement; the scale halves, and stops at 0.2 of the LR
    assert seen == [(False, 1), (False, 1), (False, 1), (True, 0.5), (False, 0.5), (False, 0.5), (True, 0.25),
                    (False, 0.25), (True, 0.2), (False, 0.2), (False, 0.2)]
    assert plateau.best == 0.7
    opt.step()
    sched.step()  # past the warmup (2 steps), the LR is the scale's
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2)
    # its state is saved beside the scheduler's, which stays loadable with weights_only=True
    torch.save({"scheduler": sched.state_dict(), "plateau": plateau.state_dict()}, tmp_path / "state.pt")
    saved = torch.load(tmp_path / "state.pt", weights_only=True)
    assert saved["plateau"] == {"scale": 0.2, "best": 0.7, "stale": 2}


def test_a_plateau_drop_applies_from_the_next_step():
    from ftool.optim import lower_now

    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(SchedulerConfig(name="plateau", args={"factor": 0.1, "patience": 1}), opt, 10, 5)
    sched.plateau.observe(0.9, "min")
    assert sched.plateau.observe(1.0, "min") and opt.param_groups[0]["lr"] == 1.0  # (until told)
    assert lower_now(sched) == pytest.approx(0.1) and opt.param_groups[0]["lr"] == pytest.approx(0.1)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
