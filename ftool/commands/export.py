"""`ftool export ckpt=<run> format=safetensors|torchscript|pt2|onnx [out=<path>]`: the run's model for
use outside ftool. Every export is loaded back and compared with the checkpoint's model on a batch
of another size than the one it was traced on; the largest difference is printed, and an export that
disagrees is an error. A trace records only the branches its example took: where the model's own
code turns a tensor into a Python value, a warning names the line.

    safetensors  weights with their metadata (classes, input shape, model); for Hugging Face
                 models with their own head (pooling=cls), a save_pretrained folder with the
                 tokenizer instead (LoRA merged), which transformers loads as it is
    torchscript  a traced module: images (N, C, H, W) scaled to [0, 1] -> logits (the data's
                 normalization is inside); text (input_ids, attention_mask) -> logits
    pt2          torch.export's ExportedProgram (TorchScript's successor): the same signature, batch
                 size (and text length) dynamic
    onnx         the same signature, batch size (and text length) dynamic
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import warnings
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from ftool import components
from ftool.data.transforms import Standardize
from ftool.engine import checkpoint
from ftool.engine.atomic import atomic_folder, atomic_write, ordinary_mode
from ftool.engine.progress import console, warn
from ftool.errors import FtoolError, one_line
from ftool.finetune import merge_lora
from ftool.inference import Trained, load_trained
from ftool.rundir import records_holding

FORMATS = {"safetensors": "model.safetensors", "torchscript": "model.pt", "pt2": "model.pt2", "onnx": "model.onnx"}
# float32 outputs of a re-ordered graph differ by rounding only: relative to outputs larger than 1
# (a regression's prices: float32 steps by 0.03 at 300,000)
TOLERANCE = 1e-4


class TextLogits(nn.Module):
    """A text model with positional tensor inputs, as traced and ONNX graphs take them."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model({"input_ids": input_ids, "attention_mask": attention_mask})


def run(cfg: DictConfig, run_dir: Path, ckpt: str, format: str, out: str) -> dict:
    if format not in FORMATS:
        raise FtoolError(f"format: must be one of {', '.join(FORMATS)}, got {format!r}")
    trained = load_trained(cfg, ckpt)
    merge_lora(trained.model)
    # (a model with an NB-SVM beside the transformer is more than transformers' folder would hold)
    hf_folder = format == "safetensors" and trained.info.text and trained.model.head is None \
        and trained.model.ngrams is None
    target = _target(out, trained, hf_folder, format)
    module = _exportable(trained.model, trained)
    example, check = _batch(trained, 2, seed=0), _batch(trained, 3, seed=1)
    exported = {"safetensors": _hf_folder if hf_folder else _safetensors, "torchscript": _torchscript,
                "pt2": _pt2, "onnx": _onnx}[format](trained, module, example, target)
    with torch.no_grad():
        expected = module(*check)
        try:
            exported = exported(*check)
        except Exception as e:  # (a trace that fixed the batch size: torch's or onnxruntime's shape error)
            said = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise FtoolError(f"export: {target} fails on a batch of {len(check[0])} samples, having been traced on "
                             f"{len(example[0])} ({said}); do not use it") from None
    difference = float((exported - expected).abs().max())
    tolerance = TOLERANCE * max(1.0, float(expected.abs().max()))
    if not difference <= tolerance:
        raise FtoolError(f"export: {target} gives outputs up to {difference:.3g} away from the checkpoint's "
                         f"(tolerance {tolerance:.3g}); do not use it")
    console.print(f"exported {trained.weights} -> {target} ({format}); checked on {len(check[0])} new samples: "
                  f"max |difference| {difference:.2g}", soft_wrap=True)
    return {"path": str(target), "max_abs_difference": difference}


def _target(out: str, trained: Trained, hf_folder: bool, format: str) -> Path:
    """Where the export goes: `out` (an existing folder gets the file inside it), else <run>/export/."""
    name = "hf" if hf_folder else FORMATS[format]
    if not out:
        return trained.run.path / "export" / name
    target = Path(out).expanduser()
    run = records_holding(target)
    if run:  # out=<run>/summary.json wrote the export over the run's record of itself
        raise FtoolError(f"out: {target} is in the run {run.path}'s records (.hydra, checkpoints/, summary.json, "
                         f"metrics.jsonl, ...), and an export there would replace them; give another path, such as "
                         f"{run.path / 'export'}")
    if hf_folder and target.is_file():
        raise FtoolError(f"out: {target} is a file; this export is a folder (Hugging Face's save_pretrained)")
    if hf_folder and target.is_dir() and any(target.iterdir()) and not (target / "config.json").is_file():
        raise FtoolError(f"out: {target} holds other files, and this export is a folder of its own (Hugging Face's "
                         f"save_pretrained) that replaces it: give a new folder, out={target / 'hf'}")
    # out=model.onnx with the default format would write safetensors under an ONNX name
    meant = next((f for f, file in FORMATS.items() if Path(file).suffix == target.suffix.lower()), format)
    if meant != format and not target.is_dir():
        wanted = "<folder>" if hf_folder else f"<name>{Path(FORMATS[format]).suffix}"
        raise FtoolError(f"out: {target.name} has the suffix of format={meant}, and this export is format={format}; "
                         f"give format={meant}, or out={wanted}")
    target = target / name if target.is_dir() and not hf_folder else target
    if format == "pt2" and target.suffix != ".pt2":  # torch.export.load warns about any other name
        raise FtoolError(f"out: {target.name}: a pt2 export's name ends in .pt2 (torch.export.load expects it); "
                         f"give out={target.name}.pt2")
    return target


def _batch(trained: Trained, size: int, seed: int) -> tuple[torch.Tensor, ...]:
    """A random batch of `size` samples for the exported module's positional inputs; for text the
    last one padded, so the export is checked on the attention mask too."""
    g = torch.Generator().manual_seed(seed)
    if trained.info.text:
        vocab = trained.model.hf.config.vocab_size
        length = min(16, trained.info.input_shape[0])
        ids = torch.randint(5, vocab, (size, length), generator=g)
        mask = torch.ones_like(ids)
        mask[-1, length // 2:] = 0
        return ids, mask
    sample = torch.rand if trained.info.is_image else torch.randn  # images: scaled to [0, 1]
    return (sample(size, *trained.info.input_shape, generator=g),)


def _metadata(trained: Trained) -> dict[str, str]:
    info = trained.info
    return {"model": trained.rc.model.name, "task": info.task, "input_shape": json.dumps(list(info.input_shape)),
            "class_names": json.dumps(info.class_names), "mean": json.dumps(info.mean), "std": json.dumps(info.std),
            "target_mean": json.dumps(info.target_mean), "target_std": json.dumps(info.target_std),
            "columns": json.dumps(info.columns)}


# Each format's exporter writes `target` and returns the export loaded back, as a function of a batch.

def _safetensors(trained: Trained, module: nn.Module, example, target: Path):
    checkpoint.save_weights(target, trained.model, **_metadata(trained))
    fresh = components.build_model(trained.rc, trained.info, pretrained=False, lora=False).eval()  # merged
    checkpoint.load_into(fresh, target)
    return _exportable(fresh, trained)


def _exportable(model: nn.Module, trained: Trained) -> nn.Module:
    """`model` as it is exported: a text model taking positional tensors (it takes a dict of them),
    an image or table model with the normalization inside: it takes images scaled to [0, 1], as image
    libraries read them, or a table's numbers as they are, so nobody outside ftool has to know the
    training set's mean and std."""
    info = trained.info
    if info.text:
        return TextLogits(model).eval()
    if trained.rc.data.normalize and info.mean is not None:  # the training transform's own, in the graph
        return nn.Sequential(Standardize(info.mean, info.std, len(info.input_shape)), model).eval()
    return model


def _hf_folder(trained: Trained, module: nn.Module, example, target: Path):
    from transformers import AutoModelForSequenceClassification

    hf = trained.model.hf
    names = trained.info.class_names
    hf.config.id2label = dict(enumerate(names))
    hf.config.label2id = {n: i for i, n in enumerate(names)}
    with atomic_folder(target) as folder:  # (a failed save leaves the previous export as it was)
        hf.save_pretrained(folder)
        trained.tokenizer().save_pretrained(folder)
        for weights in folder.glob("*.safetensors"):  # safetensors >= 0.8.1 writes them 0600 (safetensors#782)
            weights.chmod(ordinary_mode())
    reloaded = AutoModelForSequenceClassification.from_pretrained(target).eval()
    return lambda input_ids, attention_mask: reloaded(input_ids=input_ids, attention_mask=attention_mask).logits


@contextlib.contextmanager
def _tracing(format: str):
    """The tracer's warnings (TorchScript, and ONNX's exporter, which traces) silenced, except where the
    model's own code turns a tensor into a Python bool or number: the trace keeps the branch its
    example took, or its batch size, and other inputs may need another. (Those from torch's and
    transformers' own code are about shapes, which tracing treats as tensors; the rest is deprecation
    notes.)"""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    libraries = [Path(importlib.util.find_spec(name).origin).parent for name in ("torch", "transformers")
                 if importlib.util.find_spec(name)]
    places = dict.fromkeys(f"{w.filename}:{w.lineno}" for w in caught if issubclass(w.category, torch.jit.TracerWarning)
                           and not any(Path(w.filename).is_relative_to(lib) for lib in libraries))
    if places:
        warn(f"format={format}: the model's code turns a tensor into a Python value ({', '.join(places)}: a branch "
             f"on it, a size); the export keeps what its example batch gave and may differ from the model on other "
             f"inputs. format=pt2 exports only what it can follow exactly")


def _torchscript(trained: Trained, module: nn.Module, example, target: Path):
    with _tracing("torchscript"), torch.no_grad():
        traced = torch.jit.trace(module, example, check_trace=False)
    with warnings.catch_warnings():  # torch.jit is deprecated, not gone, and users still ask for it: its
        warnings.simplefilter("ignore")  # FutureWarnings say nothing they can act on
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        atomic_write(target, buffer.getvalue())
        return torch.jit.load(str(target))


def _dynamic_axes(trained: Trained) -> dict[int, str]:
    """The input axes an export leaves free, by name: the batch, and for text the length."""
    return {0: "batch", 1: "length"} if trained.info.text else {0: "batch"}


def _pt2(trained: Trained, module: nn.Module, example, target: Path):
    from torch.export import Dim, export, load, save

    dims = {axis: Dim(name) for axis, name in _dynamic_axes(trained).items()}
    if trained.info.text:
        dims[1] = Dim("length", max=trained.info.input_shape[0])  # texts are cut to max_length
    try:  # (failing, torch prints its partial graph and logs notes: the one-line error says it)
        with contextlib.redirect_stderr(io.StringIO()), _logging_off():
            program = export(module, example, dynamic_shapes=tuple(dims for _ in example))
    except Exception as e:  # the exporter's errors have many types
        raise FtoolError(f"format=pt2: the model did not export ({type(e).__name__}: {one_line(e)})") from None
    buffer = io.BytesIO()
    save(program, buffer)
    atomic_write(target, buffer.getvalue())
    return load(str(target)).module()


@contextlib.contextmanager
def _logging_off():
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _onnx(trained: Trained, module: nn.Module, example, target: Path):
    try:
        import onnxruntime
    except ImportError:
        raise FtoolError("format=onnx: needs onnx, onnxscript and onnxruntime: pip install 'ftool[export]'") from None
    names = ["input_ids", "attention_mask"] if trained.info.text else ["input"]
    dims = _dynamic_axes(trained)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        with _tracing("onnx"):
            torch.onnx.export(module, example, str(tmp), input_names=names, output_names=["logits"],
                              dynamic_axes={n: dims for n in names}, dynamo=False)
    except Exception as e:  # the exporter's errors have many types
        tmp.unlink(missing_ok=True)
        raise FtoolError(f"format=onnx: the model did not export ({type(e).__name__}: {one_line(e)})") from None
    tmp.replace(target)
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    return lambda *batch: torch.from_numpy(session.run(None, {n: t.numpy() for n, t in zip(names, batch)})[0])
