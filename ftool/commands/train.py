"""`ftool train`: build data, model, optimizer; fit; test the best checkpoint; write summary.json."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ftool import components
from ftool.config import validate
from ftool.engine import checkpoint
from ftool.engine.accelerator import select
from ftool.engine.loggers import JsonlLogger
from ftool.engine.progress import console, print_metrics
from ftool.engine.trainer import StopFlag, Trainer, evaluate, plan_steps, seed_everything
from ftool.errors import FtoolError
from ftool.metrics import build_loss, default_monitor, metric_names
from ftool.optim import build_optimizer, build_scheduler
from ftool.rundir import RunDir, Summary


def run(cfg: DictConfig, run_dir: Path) -> float | None:
    """Returns the best value of the monitored metric (what a sweeper optimizes)."""
    run = RunDir(run_dir)
    summary = Summary(run, "train")
    with summary.recording(), StopFlag().installed() as stop:
        rc = validate(cfg)
        seed_everything(rc.trainer.seed, rc.trainer.deterministic)
        acc = select(rc.trainer)
        summary.update(environment=acc.environment())
        loaders = components.build_data(rc)
        info = loaders.info
        monitor = rc.trainer.monitor or default_monitor(info)
        logged = [f"val/{m}" for m in metric_names(info)]
        if monitor not in logged:
            raise FtoolError(f"trainer.monitor: '{monitor}' is never logged; choose one of {', '.join(logged)}")
        model, step_model = acc.prepare(components.build_model(rc, info))
        optimizer = build_optimizer(rc.optimizer, model)
        _, total_steps = plan_steps(rc.trainer, len(loaders.train))
        scheduler = build_scheduler(rc.scheduler, optimizer, total_steps, len(loaders.train))
        loss_fn = build_loss(rc.trainer, info)
        summary.update(data={"task": info.task, "input_shape": list(info.input_shape),
                             "num_outputs": info.num_outputs, "class_names": info.class_names,
                             "train_size": len(loaders.train.dataset)},
                       parameters=components.count_parameters(model))
        console.print(f"[bold]ftool train[/] {rc.model.name} on {rc.data.name}: "
                      f"{components.count_parameters(model):,} parameters, {acc.device.type}, "
                      f"precision {acc.precision} -> {run.path}", soft_wrap=True)

        logger = JsonlLogger(run.metrics)
        trainer = Trainer(rc.trainer, acc, model, step_model, loss_fn, optimizer, scheduler, info, run,
                          logger, monitor, l1=rc.optimizer.l1, stop=stop)
        try:
            result = trainer.fit(loaders.train, loaders.val)
            metrics = dict(result.metrics)
            if rc.trainer.validate and rc.trainer.test:
                tested = run.best_weights if run.best_weights.is_file() else run.last_weights
                checkpoint.load_into(model, tested)
                test = evaluate(step_model, loaders.test, loss_fn, acc, info, "test")
                logger.log({"step": result.steps, "epoch": result.epochs, "split": "test", **test})
                metrics.update(test)
        finally:
            logger.close()

        checkpoints = {name: run.relative(p) for name, p in
                       (("best", run.best_weights), ("last", run.last_weights)) if p.is_file()}
        summary.update(metrics=metrics, best=result.best, checkpoints=checkpoints, timing={
            "train_seconds": round(result.train_seconds, 4),
            "train_samples": result.train_samples,
            "train_samples_per_s": round(result.train_samples / result.train_seconds, 2)
            if result.train_seconds > 0 else None,
            "epochs": result.epochs, "steps": result.steps,
        })
    print_metrics("results", metrics, where=f"run directory: {run.path}")
    return result.best["value"] if result.best else None
