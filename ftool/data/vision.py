"""Image datasets: CIFAR-10/100, MNIST, Fashion-MNIST (torchvision's formats and downloads) and
`imagefolder` (a user's own images in class folders).

CIFAR's batches are Python pickles; they are read with an unpickler that takes numpy arrays and
nothing else, so a doctored data file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from ftool.data import DataInfo, Splits
from ftool.registry import DATASETS

# Per-channel statistics of the training sets, as published with each dataset's reference code.
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
MNIST_STATS = ((0.1307,), (0.3081,))
FASHION_MNIST_STATS = ((0.2860,), (0.3530,))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # for a user's own photos


class _NumpyOnly(pickle.Unpickler):
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR file")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return _NumpyOnly(f, encoding="latin1").load()


def _cifar(name: str, root: str, download: bool, stats, label_key: str, names_key: str) -> Splits:
    from torchvision import datasets
    from torchvision.datasets.utils import download_and_extract_archive

    cls = getattr(datasets, name)
    base = Path(root).expanduser()
    folder = base / cls.base_folder
    if download and not (folder / cls.meta["filename"]).is_file():
        download_and_extract_archive(cls.url, str(base), filename=cls.filename, md5=cls.tgz_md5)

    def load(files):
        parts = [_unpickle(folder / f) for f, _ in files]
        images = np.concatenate([np.asarray(p["data"], dtype=np.uint8) for p in parts]).reshape(-1, 3, 32, 32)
        labels = [y for p in parts for y in p[label_key]]
        return TensorDataset(torch.from_numpy(images), torch.tensor(labels, dtype=torch.long))

    class_names = list(_unpickle(folder / cls.meta["filename"])[names_key])
    info = DataInfo("classification", (3, 32, 32), len(class_names), class_names, *stats)
    return Splits(train=load(cls.train_list), test=load(cls.test_list), info=info)


@DATASETS.register("cifar10")
def cifar10(root: str = "data", download: bool = False) -> Splits:
    return _cifar("CIFAR10", root, download, CIFAR10_STATS, "labels", "label_names")


@DATASETS.register("cifar100")
def cifar100(root: str = "data", download: bool = False) -> Splits:
    return _cifar("CIFAR100", root, download, CIFAR100_STATS, "fine_labels", "fine_label_names")


def _mnist_like(name: str, root: str, download: bool, stats) -> Splits:
    from torchvision import datasets

    cls = getattr(datasets, name)

    def load(train: bool):
        ds = cls(str(Path(root).expanduser()), train=train, download=download)
        return TensorDataset(ds.data.unsqueeze(1), ds.targets.long())

    info = DataInfo("classification", (1, 28, 28), len(cls.classes), list(cls.classes), *stats)
    return Splits(train=load(True), test=load(False), info=info)


@DATASETS.register("mnist")
def mnist(root: str = "data", download: bool = False) -> Splits:
    return _mnist_like("MNIST", root, download, MNIST_STATS)


@DATASETS.register("fashion_mnist")
def fashion_mnist(root: str = "data", download: bool = False) -> Splits:
    return _mnist_like("FashionMNIST", root, download, FASHION_MNIST_STATS)


def read_image(path, channels: int, size) -> torch.Tensor:
    """An image file as uint8 (C, H, W): upright as its EXIF orientation says (a phone's portrait photo),
    grayscale or RGB, resized to `size`; the same for training and `predict`."""
    from PIL import Image

    with Image.open(path) as image:
        return image_tensor(image, channels, size)


def image_tensor(image, channels: int, size) -> torch.Tensor:
    """A PIL image as uint8 (C, H, W), upright, grayscale or RGB, resized to `size`."""
    from PIL import ImageOps
    from torchvision.transforms.v2 import functional

    tensor = functional.pil_to_tensor(ImageOps.exif_transpose(image).convert("L" if channels == 1 else "RGB"))
    return tensor if tuple(tensor.shape[1:]) == tuple(size) else functional.resize(tensor, list(size), antialias=True)


def image_folder(root: Path, classes: list[str] | None = None):
    """torchvision's ImageFolder without hidden folders (.ipynb_checkpoints/) as classes or hidden files
    as images; `classes`: label by these (the train folder's), of which it may hold some only."""
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS

    class Visible(ImageFolder):
        def find_classes(self, directory):
            found = classes or sorted(p.name for p in Path(directory).iterdir() if p.is_dir()
                                      and not p.name.startswith("."))
            return found, {name: i for i, name in enumerate(found)}

    def visible(path: str) -> bool:
        return path.lower().endswith(IMG_EXTENSIONS) and not any(
            part.startswith(".") for part in Path(path).relative_to(root).parts)

    return Visible(str(root), is_valid_file=visible, allow_empty=classes is not None)


class ImageFiles(Dataset):
    """An ImageFolder's files, decoded to uint8 (C, H, W) tensors of one size."""

    def __init__(self, folder, size, channels: int):
        self.samples, self.size, self.channels = folder.samples, size, channels
        self.labels = [label for _, label in folder.samples]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        return read_image(path, self.channels, self.size), label


@DATASETS.register("imagefolder")
def imagefolder(root: Path, image_size: list | int | None = None, grayscale: bool = False) -> Splits:
    """Images in class folders: root/{train,val,test}/<class>/*.png, or root/<class>/*.png (then val and
    test are held out of it). `image_size` [H, W] (one number: square) defaults to the first image's."""
    from PIL import Image

    base = Path(root)
    train = image_folder(base / "train" if (base / "train").is_dir() else base)
    if image_size is None:
        with Image.open(train.samples[0][0]) as first:
            image_size = (first.height, first.width)
    info = photo_info(train.classes, image_size, grayscale)
    channels, size = info.input_shape[0], info.input_shape[1:]
    others = {split: ImageFiles(image_folder(base / split, train.classes), size, channels)
              for split in ("val", "test") if (base / split).is_dir()}
    return Splits(train=ImageFiles(train, size, channels), info=info, **others)


def photo_info(class_names, image_size, grayscale: bool) -> DataInfo:
    """Photos of one's own: 1 or 3 channels of `image_size` ([H, W]; one number: square), normalized with
    ImageNet's statistics (grayscale: to [-1, 1])."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    stats = ((0.5,), (0.5,)) if grayscale else IMAGENET_STATS
    return DataInfo("classification", (1 if grayscale else 3, *size), len(class_names), list(class_names), *stats)
