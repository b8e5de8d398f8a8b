"""`ftool eval ckpt=<run dir|checkpoint> [split=test|val|train|all]`: rebuild the run's model from its saved
config, load the weights safely, evaluate, print the tables (metrics; each class's for classifiers),
write eval.json in the run dir."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from omegaconf import DictConfig

from ftool import components
from ftool.config import validate
from ftool.data import check_data_fits_run, check_read_as_trained
from ftool.data.classes import labels_of
from ftool.engine import checkpoint
from ftool.engine.accelerator import select
from ftool.engine.atomic import atomic_write_json
from ftool.engine.progress import EvalProgress, console, print_metrics, print_per_class
from ftool.engine.trainer import evaluate, seed_everything
from ftool.errors import FtoolError, TooFewToSplit
from ftool.metrics import EpochMeter, build_loss, resolve_class_weights
from ftool.rundir import evaluated_scope, locate_checkpoint, read_summary


SPLITS = ("test", "val", "train", "all")


def run(cfg: DictConfig, run_dir: Path, ckpt: str, split: str) -> dict:
    if split not in SPLITS:
        raise FtoolError(f"split: must be test, val, train or all, got {split!r}")
    run, weights = locate_checkpoint(ckpt)
    rc = validate(cfg)
    check_read_as_trained(rc.data, run, own_splits=None if split == "all" else
                          "leave them as the run had them, or score every sample with split=all")
    if split == "all":  # every sample is read, so nothing is held out: a folder of a few new photos evaluates too
        rc = dataclasses.replace(rc, data=dataclasses.replace(rc.data, val_fraction=0.0, test_size=0))
    seed_everything(rc.trainer.seed, rc.trainer.deterministic)
    acc = select(rc.trainer, training=False)
    summary = read_summary(run) or {}
    trained = summary.get("data")
    try:
        loaders = components.build_data(rc, trained=trained)
    except TooFewToSplit as e:  # (new data in data.*, held out as the run held out its own)
        raise FtoolError(f"{e}; split=all scores every sample of new data") from None
    check_data_fits_run(loaders.info, trained, "eval")
    # train: what the model learned from, without augmentation (against test's figures: how much it overfits)
    loader = {"test": loaders.test, "val": loaders.val, "train": loaders.train_eval, "all": loaders.everything}[split]
    if loader is None:
        raise FtoolError("split: this run has no validation split (data.val_fraction=0)")
    model = components.build_model(rc, loaders.info, pretrained=False)  # the checkpoint brings every weight
    meta = checkpoint.load_into(model, weights)
    model, step_model = acc.prepare(model)
    meter = EpochMeter(loaders.info, acc.device)
    # the loss as the run weighted it (balanced: by the counts of its training split, whatever data is scored)
    balanced = rc.trainer.class_weights == "balanced" and summary.get("class_weights")
    class_weights = balanced or resolve_class_weights(rc.trainer.class_weights, loaders.info,
                                                      lambda: labels_of(loaders.train.dataset))
    loss_fn = build_loss(rc.trainer, loaders.info, acc.device, class_weights)
    metrics = evaluate(step_model, loader, loss_fn, acc, loaders.info, split,
                       EvalProgress(rc.trainer.progress, split, len(loader)), meter)
    per_class = meter.per_class()
    samples = len(loader.dataset)  # (of new data given in data.*, only its held-out split unless split=all)
    print_metrics(f"eval ({evaluated_scope(split, samples)})", metrics)
    if per_class:
        print_per_class(per_class)
    console.print(f"checkpoint: {weights}", soft_wrap=True)
    # Written last: where the run dir refuses it (a colleague's run, a read-only mount) the figures are shown.
    atomic_write_json(run.path / "eval.json", {
        "command": "eval", "checkpoint": str(weights), "split": split,
        "data": {"name": rc.data.name, **rc.data.args, "samples": samples},
        "epoch": int(meta["epoch"]) if "epoch" in meta else None,
        "metrics": metrics, "per_class": per_class, "environment": acc.environment(),
    })
    return metrics
