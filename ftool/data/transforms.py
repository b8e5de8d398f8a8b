"""Per-sample transforms: uint8 images to float, augmentation (training only), normalization."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

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
    call costs ~5% of a small model's step time)."""
    ops = []
    if info.is_image and stored_dtype == torch.uint8:
        ops.append(v2.ToDtype(torch.float32, scale=True))  # uint8 -> [0, 1]
    aug = cfg.augment
    if train and check_augment(cfg, info):
        if aug.crop_padding > 0:
            ops.append(v2.RandomCrop(list(info.input_shape[1:]), padding=aug.crop_padding))
        if aug.hflip:
            ops.append(v2.RandomHorizontalFlip())
        if aug.rotation > 0:
            ops.append(v2.RandomRotation(aug.rotation))
    if cfg.normalize and info.mean is not None:
        ops.append(v2.Normalize(list(info.mean), list(info.std)) if info.is_image else Standardize(info.mean, info.std))
    return v2.Compose(ops) if ops else None


class Standardize:
    """(x - mean) / std per feature of a vector, or of a batch of them (v2.Normalize takes images only)."""

    def __init__(self, mean, std):
        self.mean, self.std = torch.tensor(mean), torch.tensor(std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
