"""A user's own images: one read as training and `predict` read it (upright, 8 bits, resized), and
torchvision's ImageFolder without hidden files. Imported when images are read: torchvision takes
over a second to import, which other data does not need."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets as tvd
from torchvision.transforms.v2 import functional

from ftool.data import IMAGE_SUFFIXES, UNREAD_IMAGE_SUFFIXES, is_hidden, unread_images
from ftool.data.classes import check_split_classes
from ftool.engine.progress import warn
from ftool.errors import FtoolError, one_line

_ORIENTATION = 0x0112  # the EXIF tag


def read_image(path, what: str, read):
    """`read(image)` of the image file at `path`, turned upright as its EXIF orientation says (a phone
    stores a portrait photo sideways, with that tag); a file that is not an image (a truncated
    download) is a one-line error naming it (`what`: the setting that gave it)."""
    from PIL import ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            upright = image.getexif().get(_ORIENTATION, 1) == 1  # (exif_transpose copies even these)
            return read(image if upright else ImageOps.exif_transpose(image))
    except (UnidentifiedImageError, OSError) as e:
        if Path(path).suffix.lower() in UNREAD_IMAGE_SUFFIXES:
            raise FtoolError(f"{what}: {path}: ftool cannot read {Path(path).suffix} images; "
                             f"convert it to JPEG or PNG") from None
        raise FtoolError(f"{what}: {path} is not an image ({one_line(e)}); replace or remove it") from None


def _eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit grayscale image (medical, scientific: PIL's modes I;16 and I) scaled to 8 bits;
    PIL's own conversion would clip every value above 255 to white."""
    if image.mode != "I" and not image.mode.startswith("I;16"):
        return image
    scaled = np.clip(np.rint(np.asarray(image, dtype=np.float64) / 257), 0, 255)
    return Image.fromarray(scaled.astype(np.uint8), "L")


def image_tensor(image: Image.Image, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """A PIL image as uint8 (C, H, W) with `channels` channels (1: grayscale, else RGB), resized to `size`."""
    tensor = functional.pil_to_tensor(_eight_bit(image).convert("L" if channels == 1 else "RGB"))
    return tensor if tuple(tensor.shape[1:]) == tuple(size) else functional.resize(tensor, list(size), antialias=True)


def load_image(path, channels: int, size: tuple[int, int], what: str) -> torch.Tensor:
    """An image file as uint8 (C, H, W), converted to `channels` and resized to `size`: the same for
    training and `predict`."""
    return read_image(path, what, lambda image: image_tensor(image, channels, size))


def is_visible_image(path: Path, root: Path) -> bool:
    """An image file by its suffix, with no hidden folder or name under `root`: Jupyter's
    .ipynb_checkpoints/ and macOS's ._photo.png (metadata, not an image) are not data."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not is_hidden(path, root)


IMAGE_FOLDER_LAYOUT = "expected <root>/<class>/<image> or <root>/train/<class>/<image>"


class VisibleImageFolder(tvd.ImageFolder):
    """torchvision's ImageFolder, without hidden folders as classes or hidden files as images.
    `classes`: label by these (the train folder's), of which this folder may hold some only."""

    def __init__(self, root: Path, classes: list[str] | None = None):
        self.given = classes  # (read by find_classes, which ImageFolder's constructor calls)
        self.passed_over = []  # files that are no image ftool reads (make_dataset names the unreadable ones)
        super().__init__(str(root), is_valid_file=lambda path: self._is_image(Path(path), root),
                         allow_empty=classes is not None)

    def _is_image(self, path: Path, root: Path) -> bool:
        if is_visible_image(path, root):
            return True
        self.passed_over.append(path)
        return False

    def make_dataset(self, directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
        samples = super().make_dataset(directory, class_to_idx, extensions, is_valid_file, allow_empty=True)
        found = {label for _, label in samples}
        empty = [Path(directory) / name for name, label in class_to_idx.items() if label not in found]
        if empty and not allow_empty:
            unread = unread_images(p for p in self.passed_over if any(e in p.parents for e in empty))
            has = f"; {'they hold' if len(empty) > 1 else 'it holds'} {unread}" if unread else ""
            raise FtoolError(f"data.root: {', '.join(map(str, empty))}: no images ({' '.join(IMAGE_SUFFIXES)})"
                             f"{has}; a class folder needs at least one")
        unread = unread_images(self.passed_over)
        if unread:
            warn(f"data.root: {directory}: left out {unread}")
        return samples

    def find_classes(self, directory):
        classes = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))
        if not classes:
            raise FtoolError(f"data.root: {directory} has no class folders; {IMAGE_FOLDER_LAYOUT}")
        if self.given is not None:
            check_split_classes(f"data.root: {directory}", classes, self.given)
            classes = self.given
        return classes, {name: i for i, name in enumerate(classes)}


class ImageFiles(Dataset):
    """torchvision's ImageFolder's files, decoded to uint8 (C, H, W) tensors of one size."""

    def __init__(self, folder: VisibleImageFolder, size: tuple[int, int], channels: int):
        self.samples, self.size, self.channels = folder.samples, size, channels
        self.labels = torch.tensor([label for _, label in folder.samples])  # data.classes reads no image

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        return load_image(path, self.channels, self.size, "data.root"), label
