"""Transforms: uint8 images to float, augmentation (training only), normalization; per sample (the
DataLoader's) or per batch on the device (the tensor loader's, `BatchAugment`)."""

from __future__ import annotations

import torch
from torch import nn

from ftool.config import DataConfig
from ftool.data import DataInfo


def augments(cfg: DataConfig, info: DataInfo) -> bool:
    aug = cfg.augment
    return info.is_image and (aug.crop_padding > 0 or aug.hflip or aug.rotation > 0)


def make_transform(cfg: DataConfig, info: DataInfo, train: bool, stored_dtype: torch.dtype, normalize: bool = True):
    """The transform for one split, or None where samples need none (a per-sample call costs ~5% of
    a small model's step). torchvision is imported only for images: it takes a second to import."""
    ops = []
    aug = cfg.augment
    augment = train and augments(cfg, info)
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
    if normalize and cfg.normalize and info.mean is not None:
        ops.append(Standardize(info.mean, info.std, len(info.input_shape)))
    if len(ops) > 1:
        return nn.Sequential(*ops)
    return ops[0] if ops else None


class BatchAugment(nn.Module):
    """data.augment on a whole batch of float images (B, C, H, W) on its device, each image drawn its own
    parameters as the per-sample transforms draw them: a random crop back to size after zero padding,
    a horizontal flip with probability 1/2, a rotation by an angle uniform in [-rotation, rotation]
    (nearest pixel, zeros outside); then the normalization."""

    def __init__(self, cfg: DataConfig, info: DataInfo):
        super().__init__()
        self.padding, self.hflip, self.rotation = cfg.augment.crop_padding, cfg.augment.hflip, cfg.augment.rotation
        self.normalize = Standardize(info.mean, info.std, 3) if cfg.normalize and info.mean is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        if self.padding:
            p = self.padding
            padded = nn.functional.pad(x, (p, p, p, p))
            dy, dx = (torch.randint(0, 2 * p + 1, (b, 1), device=x.device) for _ in range(2))
            rows, cols = dy + torch.arange(h, device=x.device), dx + torch.arange(w, device=x.device)
            x = padded[torch.arange(b, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
            x = x.permute(0, 3, 1, 2)
        if self.hflip:
            x = torch.where(torch.rand(b, 1, 1, 1, device=x.device) < 0.5, x.flip(-1), x)
        if self.rotation:
            angle = (torch.rand(b, device=x.device) * 2 - 1) * self.rotation * torch.pi / 180
            cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
            theta = torch.stack([torch.stack([cos, -sin * h / w, zero], 1), torch.stack([sin * w / h, cos, zero], 1)], 1)
            grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
            x = nn.functional.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        return x if self.normalize is None else self.normalize(x)


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
