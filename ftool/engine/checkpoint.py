"""Checkpoints: model weights in safetensors (with metadata), trainer state in a torch file loaded
with `weights_only=True`. Neither can run code when loaded. All writes are atomic.

    checkpoints/best.safetensors     weights of the best epoch by trainer.monitor
    checkpoints/last.safetensors     weights at the last save
    checkpoints/last.state.pt        optimizer, scheduler, scaler, EMA, position, RNG: what resuming needs
    checkpoints/last.prev.safetensors  the weights before the last save, while its state is written

`last` is two files, written weights first, state second; the state names the step it belongs to,
and resuming takes the weights (last or last.prev) of that step. A crash between the two writes
leaves a consistent pair, so resuming always finds a complete checkpoint.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as safetensors_bytes
from torch import nn

from ftool.engine.atomic import atomic_write
from ftool.errors import FtoolError, one_line

FORMAT = "ftool-1"


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module under torch.compile's or DDP's wrapper (their keys gain prefixes)."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def save_weights(path: Path, weights: nn.Module | dict[str, torch.Tensor], **metadata) -> None:
    """A module's weights, or a state dict (what a sharded model gathers), with string metadata."""
    state = weights if isinstance(weights, dict) else unwrap(weights).state_dict()
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    meta = {"format": FORMAT, **{k: str(v) for k, v in metadata.items()}}
    atomic_write(path, safetensors_bytes(tensors, metadata=meta))


def load_weights(path: Path, key: str = "ckpt") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state_dict, metadata) from a safetensors checkpoint, or a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise FtoolError(f"{key}: checkpoint file {path} does not exist")
    data = path.read_bytes()
    try:
        tensors = load_safetensors_bytes(data)
    except (SafetensorError, ValueError) as e:
        raise FtoolError(f"{key}: {path} is not a safetensors checkpoint ({one_line(e)})") from None
    return tensors, _metadata(data)


# where training scripts keep the model's state_dict in the dict they save beside the optimizer's
_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module")


def load_state_dict_file(path: Path, key: str) -> dict[str, torch.Tensor]:
    """A model's tensors from a weights file made outside ftool's runs: safetensors (an export, a
    Hugging Face model.safetensors), or a PyTorch file of `model.state_dict()`, alone or in a dict as
    training scripts save it (`{"model": ..., "optimizer": ...}`), read with `weights_only=True`."""
    if path.suffix.lower() == ".safetensors":
        return load_weights(path, key)[0]
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError):  # (torch's words urge weights_only=False)
        raise FtoolError(f"{key}: {path} is no weights file that loads safely: give safetensors or a PyTorch file of "
                         f"model.state_dict() (torch.save); other pickled objects, a whole model say, could run code "
                         f"when loaded") from None
    candidates = [saved] + [saved[k] for k in _STATE_DICT_KEYS if isinstance(saved, dict) and k in saved]
    state = next((c for c in candidates if _is_state_dict(c)), None)
    if state is None:
        raise FtoolError(f"{key}: {path} holds no state_dict (a dict of tensors, alone or under one of the keys "
                         f"{', '.join(_STATE_DICT_KEYS)}); save model.state_dict()")
    if all(name.startswith("module.") for name in state):  # saved from inside DDP's wrapper
        state = {name.removeprefix("module."): t for name, t in state.items()}
    return state


def _is_state_dict(value) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(t, torch.Tensor) for t in value.values())


def _metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors header (8-byte little-endian length, then JSON)."""
    (header_len,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + header_len]).get("__metadata__") or {}


def load_into(model: nn.Module, path: Path, key: str = "ckpt") -> dict[str, str]:
    """Load a weights checkpoint into `model`; a mismatch names the tensors (`key`: the option
    that named the checkpoint). Returns the metadata."""
    tensors, meta = load_weights(path)
    try:
        unwrap(model).load_state_dict(tensors)
    except RuntimeError as e:  # (named by tensor; torch's own words where no name or shape differs)
        why = _mismatch(tensors, unwrap(model).state_dict()) or one_line(e)
        raise FtoolError(f"{key}: {path} does not fit this model: {why}; "
                         f"were the model's settings (model.*) changed since it was saved?") from None
    return meta


def _mismatch(saved: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str:
    """The first few differences, briefly (torch's own message is a paragraph per tensor)."""
    differences = [f"{name} is {list(saved[name].shape)} in the checkpoint, {list(t.shape)} in the model"
                   for name, t in expected.items() if name in saved and saved[name].shape != t.shape]
    differences += [f"{name} is missing" for name in expected if name not in saved]
    differences += [f"{name} is not in the model" for name in saved if name not in expected]
    more = f" (and {len(differences) - 2} more)" if len(differences) > 2 else ""
    return "; ".join(differences[:2]) + more


def save_state(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, buffer.getvalue())


def load_state(path: Path) -> dict:
    """Trainer state; `weights_only=True` refuses anything but tensors and plain containers."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FtoolError(f"ckpt: state file {path} does not exist") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise FtoolError(f"ckpt: refusing to load {path}: {one_line(e)}") from None


def save_last(run, weights: nn.Module | dict[str, torch.Tensor], state: dict) -> None:
    """The resumable checkpoint: weights (keeping the previous ones) then state, each atomic."""
    if run.last_weights.is_file():
        keep = run.last_weights.with_name(f".{run.last_weights.name}.link")
        keep.unlink(missing_ok=True)
        os.link(run.last_weights, keep)
        os.replace(keep, run.last_prev_weights)
    save_weights(run.last_weights, weights, epoch=state["epoch_done"], step=state["step"])
    save_state(run.last_state, state)
    run.last_prev_weights.unlink(missing_ok=True)  # the state names the new weights: a model's size of disk back


def load_last(run) -> tuple[Path, dict] | None:
    """(weights file, state) of the newest complete resumable checkpoint in `run`, or None."""
    if not run.last_state.is_file():
        return None
    state = load_state(run.last_state)
    for weights in (run.last_weights, run.last_prev_weights):
        if weights.is_file() and _metadata(weights.read_bytes()).get("step") == str(state["step"]):
            return weights, state
    raise FtoolError(f"trainer.resume: {run.last_state} (step {state['step']}) has no weights of that step "
                     f"beside it; the checkpoint folder is damaged")
