"""`ftool train`: build data, model, optimizer; fit (or resume); test the best checkpoint; write
summary.json. Several processes (torchrun) share the work; only the main one writes."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.text import Text

from ftool import components, finetune
from ftool.config import RunConfig, validate
from ftool.data import check_data_fits_run, check_read_as_trained
from ftool.data.classes import labels_of
from ftool.engine import checkpoint
from ftool.engine.accelerator import select
from ftool.engine.loggers import Loggers, flat_settings
from ftool.engine.progress import EvalProgress, console, print_metrics, warn
from ftool.engine.trainer import (Position, StopFlag, Trainer, batches_per_epoch, evaluate, plan_steps,
                                  seed_everything)
from ftool.errors import FtoolError, RunInterrupted
from ftool.metrics import build_loss, default_monitor, metric_names, monitor_mode, resolve_class_weights
from ftool.optim import build_optimizer, build_scheduler, warmup_steps
from ftool.rundir import RunDir, Summary, is_main_process, read_saved, read_summary, settle_config, train_lock


def run(cfg: DictConfig, run_dir: Path, command: str = "train") -> float | None:
    """Returns the best value of the monitored metric (what a sweeper optimizes)."""
    lock = train_lock(RunDir(run_dir)) if is_main_process() else contextlib.nullcontext()
    with _config_settled(RunDir(run_dir)), lock:  # (refused by the lock, a resume drops the config it brought)
        return _run(cfg, run_dir, command)


def _run(cfg: DictConfig, run_dir: Path, command: str) -> float | None:
    previous = read_summary(RunDir(run_dir)) if is_main_process() else None  # before this run rewrites it
    summary = Summary(RunDir(run_dir), command, enabled=is_main_process(), earlier=previous)
    with summary.recording(), StopFlag().installed() as stop:
        rc = validate(cfg)
        acc = select(rc.trainer)
        run = RunDir(Path(acc.broadcast(str(run_dir))))  # rank 0's run dir, on every process
        # A resume of a run that completed as far as asked has nothing to train: it is skipped, not
        # re-tested with its timing zeroed (a re-run sweep with trainer.resume=auto resumes only the rest).
        if acc.broadcast(rc.trainer.resume is not None and _trained_as_asked(previous, rc, run)
                         if previous else False):
            summary.keep(previous)
            if acc.is_main:
                more = ("another trainer.early_stopping_patience (0: none) would continue it, as it stopped early"
                        if previous.get("stopped_early") else "more trainer.epochs would continue it")
                console.print(f"ftool train: {run.path} completed before; skipped (trainer.resume; {more})",
                              soft_wrap=True)
            return ((previous or {}).get("best") or {}).get("value")  # (read by the main process only)
        settings = flat_settings(OmegaConf.to_container(cfg, resolve=True))  # for the loggers that track runs
        return _train(rc, acc, run, summary, stop, previous, settings)


def _train(rc: RunConfig, acc, run: RunDir, summary: Summary, stop: StopFlag, previous: dict | None,
           settings: dict) -> float | None:
    seed_everything(rc.trainer.seed, rc.trainer.deterministic)
    summary.update(environment=acc.environment())
    resume = _resume_point(rc, run)
    loaders = components.build_data(rc, acc.rank, acc.world_size)
    info = loaders.info
    monitor = rc.trainer.monitor or default_monitor(info)
    logged = [f"val/{m}" for m in metric_names(info)]
    if monitor not in logged:
        raise FtoolError(f"trainer.monitor: '{monitor}' is never logged; choose one of {', '.join(logged)}")
    if resume:
        _check_resumable(rc, run, info, previous, resume[1], monitor)
    if not (rc.trainer.validate and loaders.val is not None):
        # Settings that act on validation would be ignored without a word.
        why = "trainer.validate=false" if not rc.trainer.validate else \
            f"data.val_fraction={rc.data.val_fraction} holds out no data"
        for key in ("early_stopping_patience", "monitor"):
            if getattr(rc.trainer, key):
                raise FtoolError(f"trainer.{key}: needs validation, and this run has none ({why})")
        if rc.scheduler.name == "plateau":
            raise FtoolError(f"scheduler=plateau: lowers the LR when {monitor} stops improving in validation, and "
                             f"this run has none ({why})")

    # A resume's checkpoint brings every weight and names those that started pretrained, so it needs
    # no pretrained source (finetune.from's run may be gone); one from an older ftool loads it again.
    marked = resume[1].get("pretrained") if resume else None
    model = components.build_model(rc, info, pretrained=marked is None)
    if marked is not None:
        model.pretrained_parameters = set(marked)
    pretrained = finetune.pretrained_parameters(model)
    if summary.data["command"] == "finetune" and not pretrained:
        raise FtoolError(f"finetune: {rc.model.name} starts from nothing pretrained; give finetune.from=<run dir or "
                         f"checkpoint>, or a model with pretrained weights (model=hf_classifier, model.weights=...)")
    frozen = finetune.freeze(model, rc.finetune, pretrained)
    if frozen and rc.finetune.unfreeze_at_epoch and acc.world_size > 1:
        raise FtoolError("finetune.unfreeze_at_epoch: not with several processes (DDP/FSDP fix the trained "
                         "parameters when they wrap the model); freeze for the whole run or train in one process")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)  # (frozen layers, LoRA)
    if pretrained:
        params = dict(model.named_parameters())
        summary.update(finetune={"from": rc.finetune.source or rc.model.name,
                                 "pretrained_parameters": sum(params[n].numel() for n in pretrained),
                                 "frozen": frozen, "lora_r": rc.finetune.lora.r, "trainable_parameters": trainable})
    lr_mult = finetune.lr_multipliers(model, pretrained, rc.finetune)
    if resume:
        checkpoint.load_into(model, resume[0], key="trainer.resume")
    else:
        for line in components.fit_before_training(model, loaders.train):
            if acc.is_main:
                console.print(line, soft_wrap=True)
    model, step_model = acc.prepare(model)
    optimizer = build_optimizer(rc.optimizer, model, lr_mult)
    steps_per_epoch = -(-batches_per_epoch(loaders.train) // rc.trainer.accumulate_grad_batches)
    epochs, total_steps = plan_steps(rc.trainer, steps_per_epoch, Position(**resume[1]["position"]) if resume else None)
    if frozen and rc.finetune.unfreeze_at_epoch > epochs:
        raise FtoolError(f"finetune.unfreeze_at_epoch: {rc.finetune.unfreeze_at_epoch} is after the run's last epoch "
                         f"({epochs}); the frozen layers would never train")
    if resume and resume[1]["step"] > total_steps:
        raise FtoolError(f"trainer.resume: the checkpoint is at step {resume[1]['step']}, past the {total_steps} steps "
                         f"this run asks for; more trainer.epochs (or trainer.max_steps) continue it")
    scheduler = build_scheduler(rc.scheduler, optimizer, total_steps, steps_per_epoch)
    ema = None
    if rc.trainer.ema_decay:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(rc.trainer.ema_decay), use_buffers=True)
    class_weights = resolve_class_weights(rc.trainer.class_weights, info, lambda: labels_of(loaders.train.dataset))
    loss_fn = build_loss(rc.trainer, info, acc.device, class_weights)
    n_params = components.count_parameters(model)
    summary.update(data={**info.to_json(),
                         "train_size": len(loaders.train.dataset)},  # (each process samples its share of it)
                   parameters=n_params, **({"class_weights": class_weights} if class_weights else {}))

    outcome = "failed"
    logger = Loggers(run.path, run.metrics, rc.logger, enabled=acc.is_main,
                     resumed_at=resume[1]["step"] if resume else None, settings=settings,
                     metrics=tuple(f"{split}/{m}" for split in ("val", "test") for m in metric_names(info)))
    try:  # (from here the loggers are closed, recording how the run ended, whatever happens)
        trainer = Trainer(rc.trainer, acc, model, step_model, loss_fn, optimizer, scheduler, info, run, logger,
                          monitor, l1=rc.optimizer.l1, stop=stop, ema=ema,
                          unfreeze=(rc.finetune.unfreeze_at_epoch, frozen) if rc.finetune.unfreeze_at_epoch else None)
        at = None
        if resume:
            at = trainer.restore(resume[1], loaders.train)
            summary.update(resumed_from_step=at.step)
        if acc.is_main:
            settle_config(run, taken=True)  # the run goes ahead: its config is this command's
            where = (f"resuming at step {at.step} (epoch {at.epoch})" if at else f"{n_params:,} parameters"
                     f"{f' ({trainable:,} trainable)' if trainable < n_params else ''}")
            console.print(Text.assemble((f"ftool {summary.data['command']}", "bold"),
                                        f" {rc.model.name} on {rc.data.name}: {where}, {acc.device.type}"
                                        f"{f' x{acc.world_size}' if acc.world_size > 1 else ''}, precision "
                                        f"{acc.precision}{', compiled' if acc.compile else ''} -> {run.path}"), soft_wrap=True)
            if at:
                _print_lr_change(resume[1]["optimizer"]["param_groups"][0]["lr"], optimizer.param_groups[0]["lr"],
                                 at.step, total_steps)
            warmup = warmup_steps(rc.scheduler, steps_per_epoch)
            if warmup >= total_steps:  # a short trial (trainer.max_steps) of a transformer recipe, say
                warn(f"scheduler.warmup_epochs={rc.scheduler.warmup_epochs} is {warmup} steps, the run {total_steps}: "
                     f"the learning rate is still rising to optimizer.lr when the run ends")
            if rc.finetune.lora.r and rc.optimizer.lr < 1e-4:  # hf_classifier's 2e-5 is a full fine-tune's LR
                warn(f"optimizer.lr={rc.optimizer.lr:g} is a full fine-tune's LR: LoRA adapters start at zero and "
                     f"usually train at 1e-4 to 1e-3 (optimizer.lr=5e-4)")
        with acc.unused_parameters_named(model), _batch_of_one_named(loaders.train, acc.world_size):
            result = trainer.fit(loaders.train, loaders.val, at)
        metrics = dict(result.metrics)
        if rc.trainer.validate and rc.trainer.test:
            tested = run.best_weights if run.best_weights.is_file() else run.last_weights
            acc.load_model_state(model, checkpoint.load_weights(tested)[0])
            test = evaluate(step_model, loaders.test, loss_fn, acc, info, "test",
                            EvalProgress(rc.trainer.progress and acc.is_main, "test", len(loaders.test)))
            logger.log({"step": result.steps, "epoch": result.epochs, "split": "test", **test})
            metrics.update(test)
        outcome = "completed"
    except (RunInterrupted, KeyboardInterrupt):  # (a second Ctrl-C: at once)
        outcome = "interrupted"
        raise
    finally:
        logger.close(outcome)

    checkpoints = {name: run.relative(p) for name, p in
                   (("best", run.best_weights), ("last", run.last_weights)) if p.is_file()}
    environment = acc.environment()
    if acc.compile:
        import torch._dynamo.utils

        environment["compiled_graphs"] = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    summary.update(metrics=metrics, best=result.best, checkpoints=checkpoints, environment=environment,
                   stopped_early=result.stopped_early, timing={
                       "train_seconds": round(result.train_seconds, 4),
                       "train_samples": result.train_samples,
                       "train_samples_per_s": round(result.train_samples / result.train_seconds, 2)
                       if result.train_seconds > 0 else None,
                       "epochs": result.epochs, "steps": result.steps,
                       "first_step_seconds": round(result.first_step_at - summary.start, 3)
                       if result.first_step_at else None})
    if acc.is_main:
        print_metrics("results", metrics, where=f"{_best_epoch_note(result)}run directory: {run.path}")
    return result.best["value"] if result.best else None


def _best_epoch_note(result) -> str:
    """A line saying which epoch the results' val and test figures come from, where it is not the last."""
    best = result.best
    if not best or best["epoch"] == result.epochs:
        return ""
    return (f"val and test figures: epoch {best['epoch']}, the best by {best['monitor']}; "
            f"train/loss: epoch {result.epochs}\n")


def _check_resumable(rc: RunConfig, run: RunDir, info, previous: dict | None, state: dict, monitor: str) -> None:
    """What a resume may not change, as the run would go on wrong without a word (or stop in torch's
    words): its data's classes, inputs, splits and scaling; the seed (the random state and data order
    come from the checkpoint); the metric its best checkpoint so far was chosen by; the LR multipliers
    that group the optimizer's parameters, whose state the checkpoint holds group by group."""
    check_data_fits_run(info, (previous or {}).get("data"), "a resumed run")
    check_read_as_trained(rc.data, run, own_splits="a resume keeps the run's splits; "
                          "a new run (another hydra.run.dir) splits anew")
    saved = read_saved(run) or {}
    for key in ("backbone_lr_mult", "layer_lr_decay"):
        then = (saved.get("finetune") or {}).get(key, getattr(rc.finetune, key))
        if getattr(rc.finetune, key) != then:
            raise FtoolError(f"finetune.{key}={getattr(rc.finetune, key)}: the run's optimizer groups its parameters "
                             f"by it (finetune.{key}={then}), and its checkpoint holds their state so; a new run "
                             f"(ftool finetune finetune.from=<this run>) may set another")
    seed = (saved.get("trainer") or {}).get("seed", rc.trainer.seed)
    if rc.trainer.seed != seed:
        raise FtoolError(f"trainer.seed={rc.trainer.seed}: a resume continues the run's random state and data "
                         f"order (trainer.seed={seed}); a new run (another hydra.run.dir) takes another seed")
    best, mode = state["position"]["best"], monitor_mode(monitor, rc.trainer.mode)
    if best and (best["monitor"], best.get("mode", mode)) != (monitor, mode):
        raise FtoolError(f"trainer.monitor: a resume keeps the metric its best checkpoint was chosen by "
                         f"({best['monitor']}, mode {best.get('mode', mode)}); a new run (another hydra.run.dir) "
                         f"may choose another")


@contextlib.contextmanager
def _config_settled(run: RunDir):
    """A resume whose run did not go ahead (refused, skipped) leaves the run's saved config as it was."""
    try:
        yield
    finally:
        if is_main_process():
            settle_config(run, taken=False)


def _print_lr_change(saved: float, now: float, step: int, total_steps: int) -> None:
    """A resume takes its LR from this command's settings (trainer.restore): say so where it jumps."""
    if not math.isclose(saved, now, rel_tol=1e-6, abs_tol=1e-12):
        console.print(f"resume: step {step + 1} trains at learning rate {now:.3g}, where the checkpoint's run had "
                      f"{saved:.3g}: this command's optimizer and scheduler settings apply, over its {total_steps} "
                      f"steps", soft_wrap=True)


def _trained_as_asked(previous: dict, rc: RunConfig, run: RunDir) -> bool:
    """Did the run that completed in this dir train as far as this one asks? More epochs or
    steps than it made resume it instead; a run that stopped early is done unless this command
    stops otherwise (a larger early_stopping_patience, or none)."""
    if previous.get("status") != "completed":
        return False
    if previous.get("stopped_early"):
        then = (read_saved(run) or {}).get("trainer") or {}
        return all(getattr(rc.trainer, key) == then.get(key)
                   for key in ("early_stopping_patience", "early_stopping_min_delta"))
    made = previous.get("timing") or {}
    if rc.trainer.max_steps > 0:
        return made.get("steps", 0) >= rc.trainer.max_steps
    return made.get("epochs", 0) >= rc.trainer.epochs


@contextlib.contextmanager
def _batch_of_one_named(train, world_size: int):
    """torch's "Expected more than 1 value per channel when training", a traceback after an epoch's
    work, as one line: a batch of one sample, which a BatchNorm layer that sees one value per channel
    (BatchNorm1d, a ResNet's last blocks on small images) cannot normalize; most often the epoch's
    last batch, which holds what the others leave."""
    try:
        yield
    except ValueError as e:
        if "Expected more than 1 value per channel when training" not in str(e):
            raise
        samples, batch = train.sampler.per_rank, train.batch_size  # (this process's share)
        if batch == 1 or samples == 1:
            why = "the training split holds one" if samples == 1 else f"data.batch_size={world_size}" + (
                f" across {world_size} processes" if world_size > 1 else "")
            raise FtoolError(f"model: its BatchNorm layers cannot train on batches of one sample ({why}); give more") from None
        other = next(b for b in range(batch + 1, samples + 2) if samples % b != 1)  # (samples + 1 always is)
        raise FtoolError(f"model: its BatchNorm layers cannot train on one sample, and the epoch's last batch holds "
                         f"one ({samples:,} samples{' a process' if world_size > 1 else ''} in batches of {batch}); "
                         f"data.batch_size={other * world_size} makes it {samples % other or other}") from None


def _resume_point(rc: RunConfig, run: RunDir):
    """(weights, state) to resume from, or None: `auto` takes this run dir's last checkpoint if
    there is one; a path (the CLI made this run dir that path's run) must have one."""
    if rc.trainer.resume is None:
        return None
    found = checkpoint.load_last(run)
    if found is None and rc.trainer.resume != "auto":
        raise FtoolError(f"trainer.resume: {run.path} has no resumable checkpoint (checkpoints/last.state.pt)")
    return found
