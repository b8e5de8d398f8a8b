"""Per-sample transforms: uint8 images to float, augmentation (training only), normalization."""

from __future__ import annotations

import torch
from torch import nn

from ftool.config import DataConfig
from ftool.data import DataInfo


def make_transform(cfg: DataConfig, info: DataInfo, train: bool, stored_dtype: torch.dtype):
    """The transform for one split, or None where samples need none (a per-sample call costs ~5% of
    a small model's step). torchvision is imported only for images: it takes a second to import."""
    ops = []
    aug = cfg.augment
    augment = train and info.is_image and (aug.crop_padding > 0 or aug.hflip or aug.rotation > 0)
    if info.is_image and (stored_dtype == torch.uint8 or augment):
        from torchvision.transforms import v2

        if stored_dtype == torch.uint8:
            ops.append(v2.ToDtype(torch.float32, scale=True))  # uint8 -> [0, 1]
        if augment and aug.crop_padding:
            ops.append(v2.RandomCrop(list(info.input_shape[1:]), padding=aug.crop_padding))
        if augment and aug.hflip:
            ops.append(v2.RandomHorizontalFlip())
        if augment and aug.rotation:
            ops.append(v2.RandomRotation(aug.rotation))
    if cfg.normalize and info.mean is not None:
        ops.append(Standardize(info.mean, info.std, len(info.input_shape)))
    if len(ops) > 1:
        return nn.Sequential(*ops)
    return ops[0] if ops else None


class Standardize(nn.Module):
    """(x - mean) / std per channel of an image or per feature of a vector, of one input or a batch;
    a module, so exported graphs carry it."""

    def __init__(self, mean, std, dims: int):
        super().__init__()
        per_channel = (-1, *[1] * (dims - 1))  # (C, 1, 1) for images, (F,) for vectors
        self.register_buffer("mean", torch.tensor(mean).view(per_channel))
        self.register_buffer("std", torch.tensor(std).view(per_channel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
