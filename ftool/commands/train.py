"""`ftool train` and `ftool finetune`: build data, model, optimizer; fit (or resume); test the best
checkpoint; write summary.json. Several processes (torchrun) share the work; only the main one writes."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text

from ftool import components, finetune
from ftool.callbacks import Callbacks
from ftool.config import SPLIT_SETTINGS, RunConfig, check_reuse, check_with_data
from ftool.data.classes import labels_of
from ftool.engine import checkpoint
from ftool.engine.accelerator import Accelerator, select
from ftool.engine.loggers import Loggers, flat_settings
from ftool.engine.progress import Bar, console, logged_to, note, print_metrics, warn
from ftool.engine.seeding import seed_everything
from ftool.engine.trainer import Position, StopFlag, Trainer, batches_per_epoch, evaluate, plan_steps
from ftool.errors import ConfigError, doing
from ftool.metrics import build_loss, metric_names, resolve_class_weights
from ftool.optim import build_optimizer, build_scheduler, warmup_steps
from ftool.rundir import RunDir, Summary, read_json


def run(rc: RunConfig, run_dir: Path, command: str = "train") -> float | None:
    """Returns the best value of the monitored metric (what a sweeper optimizes)."""
    acc = select(rc.trainer)
    run_ = RunDir(acc.broadcast(str(run_dir)))  # rank 0's run dir, on every process
    previous = read_json(run_.summary)
    if rc.trainer.resume and previous and _trained_as_asked(previous, rc):
        note(f"ftool {command}: {run_.path} completed before; skipped (more trainer.epochs would continue it)")
        return (previous.get("best") or {}).get("value")
    summary = Summary(run_, command, earlier=previous)
    if not previous:  # a new run is on record from its start; a resume once it goes ahead
        summary.begin(config=rc.raw)
    with logged_to(run_.path / "ftool.log"), summary.recording(), StopFlag().installed() as stop:
        return _train(rc, acc, run_, summary, stop, previous)


def _trained_as_asked(previous: dict, rc: RunConfig) -> bool:
    """Did the run that completed here train as far as this command asks? (A re-run sweep with
    trainer.resume=auto resumes only the rest.)"""
    made = previous.get("timing") or {}
    if previous.get("status") != "completed":
        return False
    if previous.get("stopped_early"):
        return True
    if rc.trainer.max_steps > 0:
        return made.get("steps", 0) >= rc.trainer.max_steps
    limited = ((previous.get("config") or {}).get("trainer") or {}).get("max_steps", -1) > 0  # (maybe mid-epoch)
    return not limited and made.get("epochs", 0) >= rc.trainer.epochs


def _train(rc: RunConfig, acc: Accelerator, run: RunDir, summary: Summary, stop: StopFlag,
           previous: dict | None) -> float | None:
    seed_everything(rc.trainer.seed, rc.trainer.deterministic)
    resume = checkpoint.load_last(run) if rc.trainer.resume else None
    if rc.trainer.resume not in (None, "auto") and resume is None:
        raise ConfigError(f"trainer.resume: {run.path} has no resumable checkpoint (checkpoints/last.state.pt)")
    loaders = components.build_data(rc, acc.rank, acc.world_size, device=acc.device)
    info = loaders.info
    monitor = check_with_data(rc, info, loaders.val is not None)
    if resume and previous:
        _check_resumable(rc, previous, info)
    model, frozen, lr_mult = _model(rc, info, resume, summary)
    if not resume:
        components.fit_before_training(model, loaders.train)
    model, step_model = acc.prepare(model)
    optimizer = build_optimizer(rc.optimizer, model, lr_mult)
    steps_per_epoch = -(-batches_per_epoch(loaders.train, rc.trainer) // rc.trainer.accumulate_grad_batches)
    total_steps = plan_steps(rc.trainer, steps_per_epoch, Position(**resume[1]["position"]) if resume else None)[1]
    scheduler = build_scheduler(rc.scheduler, optimizer, total_steps, steps_per_epoch)
    class_weights = resolve_class_weights(rc.trainer.class_weights, info, lambda: labels_of(loaders.train.dataset))
    trainer = Trainer(rc.trainer, acc, model, step_model, build_loss(rc.trainer, info, acc.device, class_weights),
                      optimizer, scheduler, info, run, None, monitor, l1=rc.optimizer.l1, stop=stop, ema=_ema(rc, model),
                      unfreeze=(rc.finetune.unfreeze_at_epoch, frozen) if rc.finetune.unfreeze_at_epoch else None,
                      callbacks=Callbacks(rc.callbacks, run.path))
    at = trainer.restore(resume[1], loaders.train) if resume else None
    resumed = {"resumed_from_step": at.step} if at else {}
    summary.begin(config=rc.raw, data={**info.to_json(), "train_size": len(loaders.train.dataset)},
                  parameters=sum(p.numel() for p in model.parameters()), environment=acc.environment(),
                  **({"class_weights": class_weights} if class_weights else {}))
    trainer.logger = Loggers(run.path, run.metrics, rc.logger, enabled=acc.is_main, resumed_at=at.step if at else None,
                             settings=flat_settings(rc.raw),
                             metrics=tuple(f"{s}/{m}" for s in ("val", "test")
                                           for m in metric_names(info, rc.trainer.metrics)))
    outcome = "failed"
    try:
        _banner(rc, acc, run, summary, model, at, loaders, (steps_per_epoch, total_steps))
        if warmup_steps(rc.scheduler, steps_per_epoch) >= total_steps:
            warn(f"scheduler.warmup_epochs={rc.scheduler.warmup_epochs} is as long as the run: the learning rate is "
                 f"still rising to optimizer.lr when it ends")
        with doing("training"):
            result = trainer.fit(loaders.train, loaders.val, at)
        metrics = {**result.metrics, **_test(rc, acc, run, trainer, loaders, result)}
        outcome = "completed"
    except KeyboardInterrupt:
        outcome = "interrupted"
        raise
    finally:
        trainer.logger.close("interrupted" if stop.requested else outcome)
    _finish(acc, run, summary, result, metrics, resumed)
    acc.barrier()  # the processes end together: none tears the process group down under another's feet
    return result.best["value"] if result.best else None


def _check_resumable(rc: RunConfig, previous: dict, info) -> None:
    """The samples a resumed run trained on, and how it read them, stay the run's."""
    check_reuse(previous.get("config") or {}, rc, "trainer.resume",
                ("data.normalize", "data.classes", *(f"data.{k}" for k in SPLIT_SETTINGS)))
    then = previous.get("data") or {}
    if then and (then["class_names"], then["num_outputs"]) != (info.class_names, info.num_outputs):
        raise ConfigError(f"trainer.resume: the data's classes ({', '.join(info.class_names)}) are not the run's "
                          f"({', '.join(then['class_names'])})")


def _model(rc: RunConfig, info, resume, summary: Summary):
    """(the model, its frozen parameters, each parameter's LR multiplier). A resume's checkpoint brings
    every weight and names those that started pretrained: it needs no pretrained source."""
    model = components.build_model(rc, info, pretrained=resume is None)
    if resume:
        model.pretrained_parameters = set(resume[1].get("pretrained", ()))
        checkpoint.load_into(model, resume[0])
    pretrained = finetune.pretrained_parameters(model)
    if summary.data["command"] == "finetune" and not pretrained:
        raise ConfigError(f"finetune: model={rc.model.name} starts from nothing pretrained; give finetune.from=<run "
                          f"dir or weights file>, or pretrained weights of the model's own (model.weights=...)")
    frozen = finetune.freeze(model, rc.finetune, pretrained)
    if pretrained:
        params = dict(model.named_parameters())
        summary.update(finetune={"from": rc.finetune.source or rc.model.name, "frozen": frozen,
                                 "pretrained_parameters": sum(params[n].numel() for n in pretrained),
                                 "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
                                 "lora_r": rc.finetune.lora.r})
    return model, frozen, finetune.lr_multipliers(model, pretrained, rc.finetune)


def _ema(rc: RunConfig, model):
    if not rc.trainer.ema_decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(rc.trainer.ema_decay), use_buffers=True)


def _banner(rc, acc, run: RunDir, summary: Summary, model, at, loaders, steps: tuple[int, int]) -> None:
    """What the run is: model, data, device, and how the data is batched into steps."""
    if not acc.is_main:
        return
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    where = f"resuming at step {at.step} (epoch {at.epoch})" if at else \
        f"{params:,} parameters{f' ({trainable:,} trainable)' if trainable < params else ''}"
    console.print(Text.assemble((f"ftool {summary.data['command']}", "bold"),
                                f" {rc.model.name} on {rc.data.name}: {where}, {acc.device.type}"
                                f"{f' x{acc.world_size}' if acc.world_size > 1 else ''}, precision {acc.precision}"
                                f"{acc.precision_reason}"
                                f"{', compiled' if acc.compile else ''} -> {run.path}"), soft_wrap=True)
    sizes = " / ".join(f"{len(getattr(loaders, s).dataset):,} {s}" for s in ("train", "val", "test")
                       if getattr(loaders, s) is not None)
    per_process = f" ({loaders.train.batch_size} per process)" if acc.world_size > 1 else ""
    accumulate = rc.trainer.accumulate_grad_batches
    console.print(f"  samples: {sizes}; batch {rc.data.batch_size}{per_process}"
                  f"{f' x {accumulate} accumulated' if accumulate > 1 else ''}; {steps[0]:,} steps an epoch, "
                  f"{steps[1]:,} in all; {trainable:,} of {params:,} parameters train", soft_wrap=True)


def _test(rc: RunConfig, acc, run: RunDir, trainer: Trainer, loaders, result) -> dict:
    """The best checkpoint's (else the last's) test metrics, logged."""
    if not (rc.trainer.validate and rc.trainer.test):
        return {}
    tested = run.best_weights if run.best_weights.is_file() else run.last_weights
    acc.load_model_state(trainer.model, checkpoint.load_weights(tested)[0])
    bar = Bar(rc.trainer.progress)
    with doing("testing"):
        test = evaluate(trainer.step_model, loaders.test, trainer.loss_fn, acc, loaders.info, "test", bar,
                        names=rc.trainer.metrics, limit=rc.trainer.limit_test_batches)
    bar.close()
    trainer.logger.log({"step": result.steps, "epoch": result.epochs, "split": "test", **test})
    return test


def _finish(acc, run: RunDir, summary: Summary, result, metrics: dict, resumed: dict) -> None:
    checkpoints = {name: run.relative(p) for name, p in (("best", run.best_weights), ("last", run.last_weights))
                   if p.is_file()}
    speed = result.train_samples / result.train_seconds if result.train_seconds > 0 else None
    summary.update(metrics=metrics, best=result.best, checkpoints=checkpoints, stopped_early=result.stopped_early,
                   **resumed, timing={
                       "train_seconds": round(result.train_seconds, 4), "train_samples": result.train_samples,
                       "train_samples_per_s": round(speed, 2) if speed else None, "epochs": result.epochs,
                       "steps": result.steps, "first_step_seconds": round(result.first_step_at - summary.start, 3)
                       if result.first_step_at else None})
    if acc.is_main:
        best = result.best
        note_best = (f"val and test figures: epoch {best['epoch']}, the best by {best['monitor']}; train/loss: "
                     f"epoch {result.epochs}\n") if best and best["epoch"] != result.epochs else ""
        print_metrics("results", metrics, where=f"{note_best}run directory: {run.path}")
