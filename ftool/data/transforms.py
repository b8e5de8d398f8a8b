"""Per-sample transforms: uint8 images to float, augmentation (training only), normalization."""

from __future__ import annotations

import torch
from torch import nn

from ftool.config import DataConfig
from ftool.data import DataInfo
from ftool.errors import FtoolError


def check_augment(cfg: DataConfig, info: DataInfo) -> bool:
    """Does the config ask for augmentation? Only images can have it (text and vectors: an error)."""
    aug = cfg.augment
    wanted = aug.crop_padding > 0 or aug.hflip or aug.rotation > 0
    if wanted and not info.is_image:
        what = "is text" if info.text else f"has inputs of shape {info.input_shape}"
        raise FtoolError(f"data.augment: augmentation needs image data; this data {what}")
    return wanted


def make_transform(cfg: DataConfig, info: DataInfo, train: bool, stored_dtype: torch.dtype):
    """The transform for one split, or None when samples need none (the fast path: a per-sample
    call costs ~5% of a small model's step time). torchvision is imported only for what needs it
    (uint8 images, augmentation): it takes over a second, which digits or a table does not need."""
    ops = []
    to_float, augment = info.is_image and stored_dtype == torch.uint8, train and check_augment(cfg, info)
    if to_float or augment:
        from torchvision.transforms import v2

        if to_float:
            ops.append(v2.ToDtype(torch.float32, scale=True))  # uint8 -> [0, 1]
        if augment and cfg.augment.crop_padding > 0:
            ops.append(v2.RandomCrop(list(info.input_shape[1:]), padding=cfg.augment.crop_padding))
        if augment and cfg.augment.hflip:
            ops.append(v2.RandomHorizontalFlip())
        if augment and cfg.augment.rotation > 0:
            ops.append(v2.RandomRotation(cfg.augment.rotation))
    if cfg.normalize and info.mean is not None:
        ops.append(Standardize(info.mean, info.std, len(info.input_shape)))
    if len(ops) > 1:  # (one of them is torchvision's: v2 is imported)
        return v2.Compose(ops)
    return ops[0] if ops else None


class Standardize(nn.Module):
    """(x - mean) / std per channel of an image or per feature of a vector (`dims`: the input's),
    of one input or a batch of them, as torchvision's Normalize computes it. A module, so exported
    graphs carry it (ftool/commands/export.py)."""

    def __init__(self, mean, std, dims: int):
        super().__init__()
        per_channel = (-1, *[1] * (dims - 1))  # (C, 1, 1) for images, (F,) for vectors
        self.register_buffer("mean", torch.tensor(mean).view(per_channel))
        self.register_buffer("std", torch.tensor(std).view(per_channel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
