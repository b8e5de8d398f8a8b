"""Checkpoints: model weights in safetensors (with metadata), trainer state in a torch file loaded with
`weights_only=True`. Neither can run code when loaded. All writes are atomic.

    checkpoints/best.safetensors     weights of the best epoch by trainer.monitor
    checkpoints/last.safetensors     weights at the last save
    checkpoints/last.state.pt        optimizer, scheduler, scaler, EMA, position, RNG: what resuming needs
    checkpoints/last.prev.safetensors  the weights before the last save, while its state is written

`last` is two files, weights first, state second; the state names its step, and resuming takes the
weights (last or last.prev) of that step: a crash between the two writes leaves a consistent pair.
"""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as safetensors_bytes
from torch import nn

from ftool.engine.atomic import atomic_write
from ftool.errors import FtoolError

FORMAT = "ftool-1"


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module under torch.compile's or DDP's wrapper (their keys gain prefixes)."""
    while isinstance(inner := getattr(model, "_orig_mod", None) or getattr(model, "module", None), nn.Module):
        model = inner
    return model


def save_weights(path: Path, weights: nn.Module | dict[str, torch.Tensor], **metadata) -> None:
    """A module's weights, or a state dict (what a sharded model gathers), with string metadata."""
    state = weights if isinstance(weights, dict) else unwrap(weights).state_dict()
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    atomic_write(path, safetensors_bytes(tensors, metadata={"format": FORMAT, **{k: str(v) for k, v in metadata.items()}}))


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state_dict, metadata) of a safetensors file."""
    data = Path(path).read_bytes()
    return load_safetensors(data), _metadata(data)


def _metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors header (8-byte little-endian length, then JSON)."""
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length]).get("__metadata__") or {}


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A model's tensors from a weights file made outside ftool: safetensors, or a PyTorch file of
    `model.state_dict()`, alone or in a dict as training scripts save it (`{"model": ...}`), read with
    weights_only=True."""
    if Path(path).suffix == ".safetensors":
        return load_weights(path)[0]
    saved = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model_state_dict", "model", "module"):
        if isinstance(saved, dict) and isinstance(saved.get(key), dict):
            saved = saved[key]
    return {name.removeprefix("module."): t for name, t in saved.items()}  # (saved inside DDP's wrapper)


def load_into(model: nn.Module, path: Path) -> dict[str, str]:
    """Load a weights checkpoint into `model`; returns its metadata."""
    tensors, meta = load_weights(path)
    unwrap(model).load_state_dict(tensors)
    return meta


def save_state(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, buffer.getvalue())


def save_last(run, weights: nn.Module | dict[str, torch.Tensor], state: dict) -> None:
    """The resumable checkpoint: weights (keeping the previous ones) then state, each atomic."""
    if run.last_weights.is_file():
        keep = run.last_weights.with_name(f".{run.last_weights.name}.link")
        keep.unlink(missing_ok=True)
        os.link(run.last_weights, keep)
        os.replace(keep, run.last_prev_weights)
    save_weights(run.last_weights, weights, epoch=state["epoch_done"], step=state["step"])
    save_state(run.last_state, state)
    run.last_prev_weights.unlink(missing_ok=True)


def load_last(run) -> tuple[Path, dict] | None:
    """(weights file, state) of the newest complete resumable checkpoint in `run`, or None."""
    if not run.last_state.is_file():
        return None
    state = torch.load(run.last_state, map_location="cpu", weights_only=True)
    for weights in (run.last_weights, run.last_prev_weights):
        if weights.is_file() and _metadata(weights.read_bytes()).get("step") == str(state["step"]):
            return weights, state
    raise FtoolError(f"trainer.resume: {run.last_state} (step {state['step']}) has no weights of its step beside it")
