"""From a validated config to objects: data loaders first, then the model sized by the data."""

from __future__ import annotations

import dataclasses
import time

from torch import nn
from torch.utils.data import DataLoader

import ftool.data  # noqa: F401  (registers the datasets)
import ftool.engine.loggers  # noqa: F401  (registers the loggers)
import ftool.optim  # noqa: F401  (registers optimizers and schedules)
from ftool.config import RunConfig
from ftool.data import DataInfo
from ftool.data.classes import align_classes, select_classes
from ftool.data.loaders import Loaders, build_loaders
from ftool.errors import FtoolError
from ftool.models import apply_init, scale_outputs
from ftool.registry import DATASETS, LOGGERS, MODELS, OPTIMIZERS, SCHEDULERS

REGISTRIES = {"model": MODELS, "data": DATASETS, "optimizer": OPTIMIZERS, "scheduler": SCHEDULERS,
              "logger": LOGGERS}


SCALES = ("mean", "std", "target_mean", "target_std")  # how a run scaled its data: new data is scaled the same

TEXT_MODELS = ("hf_classifier",)  # models that take tokenized text; the others take tensors


def build_tokenizer(run: RunConfig):
    """The text model's tokenizer (Hugging Face models), or None for models that take tensors."""
    if run.model.name not in TEXT_MODELS:
        return None
    from ftool.models.hf import load_tokenizer

    return load_tokenizer(MODELS.build_args(run.model.name, run.model.args)["name_or_path"])


def build_data(run: RunConfig, rank: int = 0, world_size: int = 1, trained: dict | None = None) -> Loaders:
    """The data's loaders for this process. `trained`: a trained run's description of its data
    (summary.json's `data`); data given to evaluate it is labelled by its classes, by name (it may
    lack some), and normalized as it trained (a new table's own mean and std would shift its inputs)."""
    provided = {"tokenizer": build_tokenizer(run)} if DATASETS.accepts(run.data.name, "tokenizer") else {}
    if trained and trained.get("columns"):  # a table read as the run read its own (columns, categories, fills)
        provided["run_columns"] = trained["columns"]
    splits = DATASETS.build(run.data.name, run.data.args, **provided)
    if run.data.classes:
        splits = select_classes(splits, run.data.classes)
    if not run.data.normalize:  # the targets as they are, as the inputs are
        splits = dataclasses.replace(splits, info=dataclasses.replace(splits.info, target_mean=None, target_std=None))
    if trained:
        splits = align_classes(splits, trained["class_names"])
        run_scales = {key: value for key, value in vars(DataInfo.from_json(trained)).items() if key in SCALES}
        splits = dataclasses.replace(splits, info=dataclasses.replace(splits.info, **run_scales))
    info = splits.info
    if info.task == "classification" and info.num_outputs < 2:
        raise FtoolError(f"data: found {info.num_outputs} class ({', '.join(info.class_names) or 'unnamed'}); "
                         f"a classifier needs at least 2")
    return build_loaders(run.data, splits, seed=run.trainer.seed, rank=rank, world_size=world_size)


def build_model(run: RunConfig, info: DataInfo, pretrained: bool = True, lora: bool = True) -> nn.Module:
    """The model sized by the data. `pretrained=True` loads the pretrained weights, the model's own
    (torchvision's, a Hugging Face model's) or `finetune.from`'s, and marks them in
    `model.pretrained_parameters`; `pretrained=False` skips them (a checkpoint brings every weight).
    LoRA adapters wrap it here, after the weights are in, so every command builds the same;
    `lora=False` builds the plain model that merged adapters load into (export)."""
    if run.model.name in TEXT_MODELS and not info.text:
        raise FtoolError(f"model={run.model.name}: takes text, and data={run.data.name} gives tensors of shape "
                         f"{list(info.input_shape)}; use text data (text_files, text_csv, imdb, sst2, rotten_tomatoes)")
    model = MODELS.build(run.model.name, run.model.args, input_shape=tuple(info.input_shape),
                         num_outputs=info.num_outputs, pretrained=pretrained)
    apply_init(model, run.model.init)
    if info.target_mean is not None:
        scale_outputs(model, info.target_mean, info.target_std)
    if pretrained and run.finetune.source:
        from ftool.finetune import load_pretrained

        model.pretrained_parameters = load_pretrained(model, run.finetune.source, run.data, info.class_names)
    if run.finetune.lora.r and lora:
        from ftool.finetune import apply_lora

        model = apply_lora(model, run.finetune.lora)
    return model


def fit_before_training(model: nn.Module, train: DataLoader) -> list[str]:
    """Fit the parts of `model` that are fitted in closed form on the training split (model.ngrams'
    NB-SVM) before the rest trains; a line for each. Every process fits the same, on the whole split."""
    from ftool.models.ngrams import NgramLogits

    said = []
    for part in (m for m in model.modules() if isinstance(m, NgramLogits)):
        started = time.perf_counter()
        part.fit(DataLoader(train.dataset, batch_size=256, collate_fn=train.collate_fn))
        said.append(f"model.ngrams: an NB-SVM of word n-grams (n <= {part.n}) fitted on {len(train.dataset):,} texts "
                    f"in {time.perf_counter() - started:.1f} s")
    return said


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
