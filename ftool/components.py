"""From a validated config to objects: the data's loaders first, then the model sized by the data; and
a trained run's model, rebuilt from its record (eval, predict, export, finetune.from)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from torch import nn
from torch.utils.data import DataLoader

from ftool.config import RunConfig, validate
from ftool.data import DataInfo
from ftool.data.classes import align_classes, select_classes
from ftool.data.loaders import Loaders, build_loaders
from ftool.engine import checkpoint
from ftool.engine.progress import note
from ftool.errors import doing
from ftool.finetune import apply_lora, load_matching, merge_lora
from ftool.models import adapt_stem, apply_init, scale_outputs
from ftool.registry import DATASETS, MODELS
from ftool.rundir import RunDir, locate_checkpoint

def build_tokenizer(rc: RunConfig):
    """A text model's tokenizer (a model whose builder takes `name_or_path`: Hugging Face's), else None."""
    params = MODELS.parameters(rc.model.name)
    if "name_or_path" not in params:
        return None
    from ftool.models.hf import load_tokenizer

    with doing(f"loading the tokenizer of model={rc.model.name}"):
        return load_tokenizer(rc.model.args.get("name_or_path", params["name_or_path"].default))


def build_data(rc: RunConfig, rank: int = 0, world_size: int = 1, trained: dict | None = None,
               device=None) -> Loaders:
    """The data's loaders for this process. `trained`: a trained run's description of its data; data given
    to evaluate it is labelled by its classes, by name, and scaled as it trained."""
    provided = {"tokenizer": build_tokenizer(rc), "run_columns": (trained or {}).get("columns")}
    with doing(f"reading data={rc.data.name}"):
        splits = DATASETS.build(rc.data.name, rc.data.args, **provided)
    if rc.data.classes:
        splits = select_classes(splits, rc.data.classes)
    info = splits.info
    if not rc.data.normalize:  # the targets as they are, as the inputs are
        info = dataclasses.replace(info, target_mean=None, target_std=None)
    if trained:
        splits = align_classes(splits, trained["class_names"])
        scales = ("mean", "std", "target_mean", "target_std")
        info = dataclasses.replace(splits.info, **{k: getattr(DataInfo.from_json(trained), k) for k in scales})
    with doing(f"reading data={rc.data.name}"):  # (the tensor loader reads every sample here)
        return build_loaders(rc.data, dataclasses.replace(splits, info=info), rc.trainer.seed, rank, world_size,
                             rc.trainer.overfit_batches, device)


def build_model(rc: RunConfig, info: DataInfo, pretrained: bool = True, lora: bool = True) -> nn.Module:
    """The model sized by the data. `pretrained`: load the pretrained weights (the model's own, or
    finetune.from's) and mark them; False where a checkpoint brings every weight. LoRA adapters wrap it
    after the weights are in (`lora=False`: the plain model merged adapters load into)."""
    with doing(f"building model={rc.model.name}"):
        model = MODELS.build(rc.model.name, rc.model.args, input_shape=tuple(info.input_shape), pretrained=pretrained,
                             num_outputs=info.num_outputs, num_classes=info.num_outputs, num_labels=info.num_outputs)
    if info.is_image:
        adapt_stem(model, info.input_shape[0])
    apply_init(model, rc.model.init)
    if info.target_mean is not None:
        scale_outputs(model, info.target_mean, info.target_std)
    if pretrained and rc.finetune.source:
        with doing(f"loading finetune.from={rc.finetune.source}"):
            model.pretrained_parameters = load_matching(model, pretrained_tensors(rc.finetune.source),
                                                        rc.finetune.source)
    if rc.finetune.lora.r and lora:
        model = apply_lora(model, rc.finetune.lora)
    return model


def pretrained_tensors(source: str) -> dict:
    """finetune.from's tensors: a run's best checkpoint (a LoRA run's with its adapters merged), or a
    weights file of one's own (an export, a state_dict a training script saved)."""
    path = Path(source).expanduser().resolve()
    if path.is_file() and not (path.parent.parent / "summary.json").is_file():
        return checkpoint.load_state_dict_file(path)
    run, weights = locate_checkpoint(source, "finetune.from")
    tensors = checkpoint.load_weights(weights)[0]
    if any(".lora_A." in name for name in tensors):
        tensors = merge_lora(load_trained(run, weights).model).state_dict()
    return tensors


def fit_before_training(model: nn.Module, train: DataLoader) -> None:
    """The parts of `model` fitted in closed form on the training split before the rest trains: every
    module with a `fit_before_training(batches)` method (model=hf_nbsvm's NB-SVM). Every process fits
    the same, on the whole split."""
    for part in (m for m in model.modules() if hasattr(m, "fit_before_training")):
        started = time.perf_counter()
        with doing(f"fitting {type(part).__name__} before training"):
            part.fit_before_training(DataLoader(train.dataset, batch_size=256, collate_fn=train.collate_fn))
        note(f"model: {type(part).__name__} fitted on {len(train.dataset):,} samples in "
             f"{time.perf_counter() - started:.1f} s")


@dataclass
class Trained:
    run: RunDir
    weights: Path  # the checkpoint file loaded
    rc: RunConfig
    info: DataInfo
    model: nn.Module  # on the CPU, in eval mode
    record: dict  # the run's summary.json


def load_trained(run: RunDir, weights: Path, rc: RunConfig | None = None, record: dict | None = None) -> Trained:
    """A run's model rebuilt from its record (its config, or `rc` given over it) and loaded from `weights`."""
    record = record or run.record()
    rc = rc or validate(record["config"])
    info = DataInfo.from_json(record["data"])
    model = build_model(rc, info, pretrained=False)
    with doing(f"loading {weights}"):
        checkpoint.load_into(model, weights)
    return Trained(run, weights, rc, info, model.eval(), record)
