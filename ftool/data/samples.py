"""A dataset's samples as ftool's transforms, models and losses take them, from the forms a dataset
of one's own gives them in (ftool's own data is already in them, and passes through as it is).

- An input: a float32 tensor of `DataInfo.input_shape`, or a uint8 image tensor (C, H, W). NumPy
  arrays, lists, float64 tensors (scikit-learn's and pandas' numbers are float64: torch refuses to
  multiply them by float32 weights) and PIL images (torchvision's datasets without a transform,
  resized to the data's input shape as ftool's own image files are) are converted.
- A class: an int index into `DataInfo.class_names`, from any form that holds one whole number (a
  tensor or array of one value of any integer type, `1.0`); torch's cross-entropy takes only int64,
  and a `(n, 1)` column of labels only flattened.
- A regression's targets: a float32 vector of `num_outputs` values. A target of shape `()` would
  batch to `(n,)` and broadcast against the model's `(n, 1)` outputs: a loss of every sample
  against every other, which trains to predicting the mean.

The readers are small classes rather than closures so that DataLoader workers started by spawn
(macOS, Windows) can pickle them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ftool.data import DataInfo
from ftool.errors import FtoolError


@dataclass(frozen=True)
class SampleReader:
    """An (input, target) sample of one dataset, read as ftool takes it."""

    read_input: Optional[Callable]  # None: its inputs are taken as they are
    read_target: Callable

    def __call__(self, sample):
        x, y = sample
        return (x if self.read_input is None else self.read_input(x)), self.read_target(y)


def sample_reader(first, info: DataInfo, data: str) -> SampleReader:
    """The reader for the dataset whose first sample is `first` (`data`: its name, for errors). That
    sample is read and checked here: a form ftool cannot take is one line before training, not a
    DataLoader worker's traceback or a model's shape error later."""
    if not (isinstance(first, (tuple, list)) and len(first) == 2):
        raise FtoolError(f"data={data}: a sample is a pair (input, target); got {_shown(first)}")
    reader = SampleReader(None if info.text else _input_reader(first[0], info, data), _target_reader(info, data))
    x, _ = reader(first)
    if not info.text and tuple(x.shape) != tuple(info.input_shape):
        raise FtoolError(f"data={data}: a sample's input has shape {tuple(x.shape)} and the data's "
                         f"DataInfo.input_shape is {tuple(info.input_shape)}{_layout_hint(tuple(x.shape), info)}")
    return reader


def _input_reader(x, info: DataInfo, data: str) -> Optional[Callable]:
    if isinstance(x, torch.Tensor) and (x.dtype == torch.float32 or x.dtype == torch.uint8 and info.is_image):
        return None
    if type(x).__module__.startswith("PIL.") and info.is_image:
        return PILImage(info.input_shape[0], tuple(info.input_shape[1:]))
    return Numbers(info.is_image, data)


@dataclass(frozen=True)
class Numbers:
    """An array, list or tensor of numbers as float32; uint8 images stay uint8 (the transforms scale them)."""

    keep_bytes: bool
    data: str

    def __call__(self, x) -> torch.Tensor:
        try:
            values = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError):
            raise FtoolError(f"data={self.data}: a sample's input must be numbers (a tensor, an array, a list) or, for "
                             f"image data, an image; got {_shown(x)}") from None
        return values if self.keep_bytes and values.dtype == torch.uint8 else values.to(torch.float32)


@dataclass(frozen=True)
class PILImage:
    """A PIL image as uint8 (C, H, W) with `channels` channels and the data's size, as ftool reads image
    files (torchvision's ImageFolder without a transform gives photos of every size)."""

    channels: int
    size: tuple[int, int]

    def __call__(self, image) -> torch.Tensor:
        from ftool.data.image_files import image_tensor

        return image_tensor(image, self.channels, self.size)


def _layout_hint(shape: tuple, info: DataInfo) -> str:
    want = tuple(info.input_shape)
    if len(want) == 3 and shape == (*want[1:], want[0]):
        return "; images are channels first, (C, H, W): x.permute(2, 0, 1)"
    if shape == want[1:] and want[0] == 1:
        return "; a grayscale image has one channel, (1, H, W): x.unsqueeze(0)"
    return ""


def _target_reader(info: DataInfo, data: str) -> Callable:
    if info.task == "regression":
        return TargetVector(info.num_outputs, data)
    named = [f"{i}: {name}" for i, name in enumerate(info.class_names[:info.num_outputs])]
    if len(named) > 6:  # (ImageNet's 1,000 would not be one line)
        named = [*named[:3], "...", named[-1]]
    return ClassIndex(info.num_outputs, ", ".join(named) or "unnamed", data)


@dataclass(frozen=True)
class TargetVector:
    """A regression's targets as a float32 vector of `size` values."""

    size: int
    data: str

    def __call__(self, y) -> torch.Tensor:
        if isinstance(y, torch.Tensor) and y.shape == (self.size,) and y.dtype == torch.float32:
            return y  # (ftool's own data's form)
        try:
            values = torch.as_tensor(y, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            raise FtoolError(f"data={self.data}: a sample's target must be numbers, got {_shown(y)}") from None
        if values.numel() != self.size:
            raise FtoolError(f"data={self.data}: a sample's target holds {values.numel()} values and the data's "
                             f"DataInfo.num_outputs is {self.size}")
        return values.reshape(self.size)


@dataclass(frozen=True)
class ClassIndex:
    """A class as an int from 0 to `classes - 1`."""

    classes: int
    names: str  # "0: cat, 1: dog", for errors
    data: str

    def __call__(self, y) -> int:
        if type(y) is not int:
            y = self._whole_number(y)
        if not 0 <= y < self.classes:
            raise FtoolError(f"data={self.data}: a sample's class is {y}; the data has {self.classes} classes, "
                             f"0 to {self.classes - 1} ({self.names})")
        return y

    def _whole_number(self, y) -> int:
        try:
            value = y.item()  # a tensor, array or NumPy number of one value
        except AttributeError:
            value = y
        except (ValueError, RuntimeError):  # more values than one
            value = None
        if isinstance(value, (bool, int)) or isinstance(value, float) and value.is_integer():
            return int(value)
        raise FtoolError(f"data={self.data}: a sample's class must be one whole number (an index into "
                         f"DataInfo.class_names), got {_shown(y)}")


def _shown(value) -> str:
    if hasattr(value, "shape"):
        return f"{type(value).__name__} of shape {tuple(value.shape)}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
