"""`ftool eval ckpt=<run dir|checkpoint> [split=test|val|train|all]`: the run's model, rebuilt from its
record and loaded from the checkpoint, scored on a split of its data (or of new data given in data.*):
the metrics and, for a classifier, each class's; eval.json in the run dir."""

from __future__ import annotations

import dataclasses

from ftool import components
from ftool.components import Trained
from ftool.config import SPLIT_SETTINGS, check_reuse
from ftool.data.classes import labels_of
from ftool.engine.accelerator import select
from ftool.engine.atomic import atomic_write_json
from ftool.engine.progress import Bar, console, print_metrics, print_per_class
from ftool.engine.seeding import seed_everything
from ftool.engine.trainer import evaluate
from ftool.errors import ConfigError, doing
from ftool.metrics import EpochMeter, build_loss, resolve_class_weights
from ftool.rundir import evaluated_scope


def run(trained: Trained, split: str = "test") -> dict:
    rc, record = trained.rc, trained.record
    # On the run's data, other split settings would score samples it trained on as unseen (split=all knows).
    check_reuse(record["config"], rc, f"eval split={split}",
                ("data.normalize",) + (() if split == "all" else tuple(f"data.{k}" for k in SPLIT_SETTINGS)))
    if split == "all":  # every sample is read and nothing held out: a folder of a few new photos evaluates
        rc = dataclasses.replace(rc, data=dataclasses.replace(rc.data, val_fraction=0.0, test_size=0))
    seed_everything(rc.trainer.seed, rc.trainer.deterministic)
    acc = select(dataclasses.replace(rc.trainer, devices=1))
    loaders = components.build_data(rc, trained=record["data"], device=acc.device)
    loader = {"test": loaders.test, "val": loaders.val, "train": loaders.train_eval, "all": loaders.everything}[split]
    if loader is None:
        raise ConfigError("split=val: this run has no validation split (data.val_fraction=0)")
    model, step_model = acc.prepare(trained.model)
    # the loss as the run weighted it (balanced: by its training split's counts, whatever data is scored)
    class_weights = record.get("class_weights") or resolve_class_weights(
        rc.trainer.class_weights, loaders.info, lambda: labels_of(loaders.train.dataset))
    meter, bar = EpochMeter(loaders.info, acc.device, rc.trainer.metrics), Bar(rc.trainer.progress)
    with doing("evaluating"):
        metrics = evaluate(step_model, loader, build_loss(rc.trainer, loaders.info, acc.device, class_weights), acc,
                           loaders.info, split, bar, meter)
    bar.close()
    samples, per_class = len(loader.dataset), meter.per_class()
    print_metrics(f"eval ({evaluated_scope(split, samples)})", metrics)
    if per_class:
        print_per_class(per_class)
    console.print(f"checkpoint: {trained.weights}", soft_wrap=True)
    atomic_write_json(trained.run.path / "eval.json", {
        "command": "eval", "checkpoint": str(trained.weights), "split": split,
        "data": {"name": rc.data.name, **rc.data.args, "samples": samples},
        "metrics": metrics, "per_class": per_class, "environment": acc.environment()})
    return metrics
