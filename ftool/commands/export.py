"""`ftool export ckpt=<run> format=safetensors|torchscript|pt2|onnx [out=<path>]`: the run's model for use
outside ftool. Every export is loaded back and compared with the checkpoint's model on a batch of another
size than the one it was traced on; an export that disagrees is an error.

    safetensors  weights with their metadata (classes, input shape, model); for a Hugging Face model with
                 its own head (pooling=cls), a save_pretrained folder with the tokenizer (LoRA merged)
    torchscript  a traced module: images (N, C, H, W) scaled to [0, 1] -> logits (the normalization is
                 inside); text (input_ids, attention_mask) -> logits
    pt2          torch.export's ExportedProgram: the same signature, batch size (and text length) dynamic
    onnx         the same signature, batch size (and text length) dynamic
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from ftool import components
from ftool.components import Trained
from ftool.data.transforms import Standardize
from ftool.engine import checkpoint
from ftool.engine.atomic import atomic_folder, atomic_write
from ftool.engine.progress import console
from ftool.errors import ConfigError, FtoolError, doing
from ftool.finetune import merge_lora
from ftool.models.hf import HFClassifier

FORMATS = {"safetensors": "model.safetensors", "torchscript": "model.pt", "pt2": "model.pt2", "onnx": "model.onnx"}
TOLERANCE = 1e-4  # float32 outputs of a re-ordered graph differ by rounding, relative to outputs above 1


class TextLogits(nn.Module):
    """A text model with positional tensor inputs, as traced and ONNX graphs take them."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model({"input_ids": input_ids, "attention_mask": attention_mask})


def run(trained: Trained, format: str = "safetensors", out: str = "") -> dict:
    run = trained.run
    merge_lora(trained.model)
    hf_folder = format == "safetensors" and type(trained.model) is HFClassifier and trained.model.head is None
    target = Path(out).expanduser() if out else run.path / "export" / ("hf" if hf_folder else FORMATS[format])
    if target.is_dir() and not hf_folder:
        target = target / FORMATS[format]
    records = [run.path, run.summary, run.metrics, run.checkpoints, *run.checkpoints.glob("*"), run.path / ".hydra"]
    if target.resolve() in {p.resolve() for p in records}:
        raise ConfigError(f"out: {target} would replace the run's own records; give a path in {run.path / 'export'}")
    module = exportable(trained.model, trained)
    example, check = _batch(trained, 2, seed=0), _batch(trained, 3, seed=1)
    exporter = {"safetensors": _hf_folder if hf_folder else _safetensors, "torchscript": _torchscript,
                "pt2": _pt2, "onnx": _onnx}[format]
    with doing(f"exporting format={format}"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracers' notes on shapes and deprecations
        exported = exporter(trained, module, example, target)
        with torch.no_grad():
            expected, got = module(*check), exported(*check)
    difference = float((got - expected).abs().max())
    tolerance = TOLERANCE * max(1.0, float(expected.abs().max()))
    if not difference <= tolerance:
        raise FtoolError(f"export: {target} gives outputs up to {difference:.3g} away from the checkpoint's "
                         f"(tolerance {tolerance:.3g}); do not use it")
    console.print(f"exported {trained.weights} -> {target} ({format}); checked on {len(check[0])} new samples: "
                  f"max |difference| {difference:.2g}", soft_wrap=True)
    return {"path": str(target), "max_abs_difference": difference}


def exportable(model: nn.Module, trained) -> nn.Module:
    """`model` as exported: a text model taking positional tensors, an image or table model with the
    normalization inside (images scaled to [0, 1] or a table's numbers in, as they are)."""
    info = trained.info
    if info.text:
        return TextLogits(model).eval()
    if trained.rc.data.normalize and info.mean is not None:
        return nn.Sequential(Standardize(info.mean, info.std, len(info.input_shape)), model).eval()
    return model


def _batch(trained, size: int, seed: int) -> tuple[torch.Tensor, ...]:
    """A random batch for the export's inputs; for text the last one padded, to check the attention mask."""
    g = torch.Generator().manual_seed(seed)
    if trained.info.text:
        length = min(16, trained.info.input_shape[0])
        ids = torch.randint(5, trained.model.hf.config.vocab_size, (size, length), generator=g)
        mask = torch.ones_like(ids)
        mask[-1, length // 2:] = 0
        return ids, mask
    return ((torch.rand if trained.info.is_image else torch.randn)(size, *trained.info.input_shape, generator=g),)


def _metadata(trained) -> dict[str, str]:
    info = trained.info
    return {"model": trained.rc.model.name, "task": info.task, **{k: json.dumps(getattr(info, k)) for k in (
        "input_shape", "class_names", "mean", "std", "target_mean", "target_std", "columns")}}


def _safetensors(trained, module: nn.Module, example, target: Path):
    checkpoint.save_weights(target, trained.model, **_metadata(trained))
    fresh = components.build_model(trained.rc, trained.info, pretrained=False, lora=False).eval()  # merged
    checkpoint.load_into(fresh, target)
    return exportable(fresh, trained)


def _hf_folder(trained, module: nn.Module, example, target: Path):
    from transformers import AutoModelForSequenceClassification

    hf, names = trained.model.hf, trained.info.class_names
    hf.config.id2label, hf.config.label2id = dict(enumerate(names)), {n: i for i, n in enumerate(names)}
    with atomic_folder(target) as folder:
        hf.save_pretrained(folder)
        components.build_tokenizer(trained.rc).save_pretrained(folder)
    reloaded = AutoModelForSequenceClassification.from_pretrained(target).eval()
    return lambda input_ids, attention_mask: reloaded(input_ids=input_ids, attention_mask=attention_mask).logits


def _torchscript(trained, module: nn.Module, example, target: Path):
    with torch.no_grad():
        traced = torch.jit.trace(module, example, check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    atomic_write(target, buffer.getvalue())
    return torch.jit.load(str(target))


def _dynamic_axes(trained) -> dict[int, str]:
    return {0: "batch", 1: "length"} if trained.info.text else {0: "batch"}


def _pt2(trained, module: nn.Module, example, target: Path):
    from torch.export import Dim, export, load, save

    dims = {axis: Dim(name) for axis, name in _dynamic_axes(trained).items()}
    if trained.info.text:
        dims[1] = Dim("length", max=trained.info.input_shape[0])  # texts are cut to max_length
    program = export(module, example, dynamic_shapes=tuple(dims for _ in example))
    buffer = io.BytesIO()
    save(program, buffer)
    atomic_write(target, buffer.getvalue())
    return load(str(target)).module()


def _onnx(trained, module: nn.Module, example, target: Path):
    """An ONNX graph with the run's description (class names, input shape, scaling) in its metadata_props."""
    import onnx
    import onnxruntime

    names = ["input_ids", "attention_mask"] if trained.info.text else ["input"]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    torch.onnx.export(module, example, str(tmp), input_names=names, output_names=["logits"],
                      dynamic_axes={n: _dynamic_axes(trained) for n in names}, dynamo=False)
    graph = onnx.load(str(tmp))
    onnx.helper.set_model_props(graph, _metadata(trained))
    onnx.save(graph, str(tmp))
    tmp.replace(target)
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    return lambda *batch: torch.from_numpy(session.run(None, {n: t.numpy() for n, t in zip(names, batch)})[0])
