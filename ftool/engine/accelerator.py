"""The one place that decides device, precision and compilation; the rest of ftool never asks."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from ftool.config import TrainerConfig
from ftool.errors import FtoolError

_DTYPES = {"bf16-mixed": torch.bfloat16, "fp16-mixed": torch.float16}


@dataclass
class Accelerator:
    device: torch.device
    precision: str  # "32" | "bf16-mixed" | "fp16-mixed": `auto` is resolved
    compile: bool

    def autocast(self):
        if self.precision == "32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_DTYPES[self.precision])

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for fp16 (a no-op object otherwise): fp16 gradients underflow without it."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16-mixed")

    def prepare(self, model: nn.Module) -> tuple[nn.Module, nn.Module]:
        """(model on the device, the callable to run steps with: compiled when asked)."""
        model = model.to(self.device)
        return model, (torch.compile(model) if self.compile else model)

    def to_device(self, batch):
        non_blocking = self.device.type == "cuda"
        return [t.to(self.device, non_blocking=non_blocking) for t in batch]

    def environment(self) -> dict:
        return {"accelerator": self.device.type, "precision": self.precision, "compile": self.compile,
                "world_size": 1, "torch": torch.__version__}


def select(cfg: TrainerConfig) -> Accelerator:
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    kind = cfg.accelerator
    if kind == "auto":
        kind = "cuda" if cuda else "mps" if mps else "cpu"
    elif (kind == "cuda" and not cuda) or (kind == "mps" and not mps):
        raise FtoolError(f"trainer.accelerator: {kind} is not available on this machine; use auto or cpu")
    precision = cfg.precision
    if precision == "auto":
        bf16 = kind == "cuda" and torch.cuda.is_bf16_supported()
        precision = "bf16-mixed" if bf16 else "fp16-mixed" if kind == "cuda" else "32"
    return Accelerator(torch.device(kind), precision, cfg.compile)
