"""From a validated config to objects: data loaders first, then the model sized by the data."""

from __future__ import annotations

from torch import nn

import ftool.data  # noqa: F401  (registers the datasets)
import ftool.engine.loggers  # noqa: F401  (registers the loggers)
import ftool.optim  # noqa: F401  (registers optimizers and schedules)
from ftool.config import RunConfig
from ftool.data import DataInfo
from ftool.data.classes import select_classes
from ftool.data.loaders import Loaders, build_loaders
from ftool.models import apply_init
from ftool.registry import DATASETS, LOGGERS, MODELS, OPTIMIZERS, SCHEDULERS

REGISTRIES = {"model": MODELS, "data": DATASETS, "optimizer": OPTIMIZERS, "scheduler": SCHEDULERS,
              "logger": LOGGERS}


def build_data(run: RunConfig, rank: int = 0, world_size: int = 1) -> Loaders:
    splits = DATASETS.build(run.data.name, run.data.args)
    if run.data.classes:
        splits = select_classes(splits, run.data.classes)
    return build_loaders(run.data, splits, seed=run.trainer.seed, rank=rank, world_size=world_size)


def build_model(run: RunConfig, info: DataInfo) -> nn.Module:
    model = MODELS.build(run.model.name, run.model.args, input_shape=tuple(info.input_shape),
                         num_outputs=info.num_outputs)
    apply_init(model, run.model.init)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
