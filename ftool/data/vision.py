"""Image datasets on disk: CIFAR-10/100, MNIST, Fashion-MNIST (torchvision's formats and
downloads) and `imagefolder` (a user's own images in class folders).

CIFAR's batches are Python pickles; they are read with an unpickler that accepts numpy arrays
and nothing else, so a doctored data file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ftool.data import DataInfo, Splits, checked_shape
from ftool.errors import FtoolError, one_line
from ftool.registry import DATASETS
from ftool.values import is_size

# Per-channel statistics of the training sets, as published with each dataset's reference code.
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
MNIST_STATS = ((0.1307,), (0.3081,))
FASHION_MNIST_STATS = ((0.2860,), (0.3530,))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # for a user's own photos


def _require_files(name: str, root: Path, files: list[str], download: bool, fetch) -> None:
    """Download when asked and needed; then fail with one message if files are still missing."""
    missing = [f for f in files if not (root / f).is_file()]
    if missing and download:
        try:
            fetch()
        except Exception as e:  # network errors come in many types (URLError, OSError, ...)
            raise FtoolError(f"data: downloading {name} into {root} failed ({type(e).__name__}: {one_line(e)}); "
                             f"copy the files there by hand instead") from None
        missing = [f for f in files if not (root / f).is_file()]
    if missing:
        raise FtoolError(
            f"data: {name} not found under data.root={root}: missing {', '.join(missing)}; "
            f"run with data.download=true on a machine with internet access, or copy the files there"
        )


class _NumpyOnlyUnpickler(pickle.Unpickler):
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise FtoolError(f"data: refusing to load {module}.{name} from a CIFAR batch file")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    """A CIFAR file (a batch, or the meta file): numpy arrays only; a damaged one is a one-line error."""
    with open(path, "rb") as f:
        try:
            return _NumpyOnlyUnpickler(f, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as e:
            raise FtoolError(f"data: {path} is not a CIFAR file ({one_line(e)})") from None


def _read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, list[int]]:
    entry = _unpickle(path)
    return np.asarray(entry["data"], dtype=np.uint8), list(entry[label_key])


def _cifar(name: str, root: str, download: bool, stats, label_key: str, names_key: str) -> Splits:
    from torchvision import datasets  # (imported here, for these data only: it takes over a second)
    from torchvision.datasets.utils import download_and_extract_archive

    cls = getattr(datasets, name)
    base = Path(root).expanduser().resolve()
    folder = base / cls.base_folder
    train_files = [name for name, _ in cls.train_list]
    test_files = [name for name, _ in cls.test_list]
    meta_file = cls.meta["filename"]
    _require_files(cls.__name__, folder, train_files + test_files + [meta_file], download,
                   lambda: download_and_extract_archive(cls.url, str(base), filename=cls.filename,
                                                        md5=cls.tgz_md5))

    def load(files):
        parts = [_read_cifar_batch(folder / f, label_key) for f in files]
        images = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32)
        labels = sum((p[1] for p in parts), [])
        return TensorDataset(torch.from_numpy(images), torch.tensor(labels, dtype=torch.long))

    class_names = list(_unpickle(folder / meta_file)[names_key])
    info = DataInfo("classification", (3, 32, 32), len(class_names), class_names, *stats)
    return Splits(train=load(train_files), test=load(test_files), info=info)


@DATASETS.register("cifar10")
def cifar10(root: str = "data", download: bool = False) -> Splits:
    return _cifar("CIFAR10", root, download, CIFAR10_STATS, "labels", "label_names")


@DATASETS.register("cifar100")
def cifar100(root: str = "data", download: bool = False) -> Splits:
    return _cifar("CIFAR100", root, download, CIFAR100_STATS, "fine_labels", "fine_label_names")


def _gunzip_missing(folder: Path, files: list[str]) -> None:
    """Unpack `<file>.gz` beside each missing file, as torchvision's download does: the MNIST files
    are handed out gzipped, so a copy of them, not unpacked, is what a user often has."""
    import gzip
    import zlib

    from ftool.engine.atomic import atomic_write

    for name in files:
        packed = folder / f"{name}.gz"
        if packed.is_file() and not (folder / name).is_file():
            try:
                data = gzip.decompress(packed.read_bytes())
            except (gzip.BadGzipFile, EOFError, zlib.error) as e:
                raise FtoolError(f"data: {packed} is not a whole gzip file ({one_line(e)}); "
                                 f"replace it, or remove it to download again") from None
            atomic_write(folder / name, data)


def _mnist_like(name: str, root: str, download: bool, stats) -> Splits:
    from torchvision import datasets

    cls = getattr(datasets, name)
    base = Path(root).expanduser().resolve()
    raw = base / cls.__name__ / "raw"
    files = [Path(url).name.removesuffix(".gz") for url, _ in cls.resources]
    _gunzip_missing(raw, files)
    _require_files(cls.__name__, raw, files, download, lambda: cls(str(base), download=True))

    def load(train: bool):
        ds = cls(str(base), train=train)
        return TensorDataset(ds.data.unsqueeze(1), ds.targets.long())

    info = DataInfo("classification", (1, 28, 28), len(cls.classes), list(cls.classes), *stats)
    return Splits(train=load(True), test=load(False), info=info)


@DATASETS.register("mnist")
def mnist(root: str = "data", download: bool = False) -> Splits:
    return _mnist_like("MNIST", root, download, MNIST_STATS)


@DATASETS.register("fashion_mnist")
def fashion_mnist(root: str = "data", download: bool = False) -> Splits:
    return _mnist_like("FashionMNIST", root, download, FASHION_MNIST_STATS)


@DATASETS.register("imagefolder")
def imagefolder(root: str, image_size: list | int | None = None, grayscale: bool = False) -> Splits:
    """Images in class folders: root/{train,val,test}/<class>/*.png, or root/<class>/*.png (then
    val and test are held out of it). `image_size` [H, W] (one number: square) defaults to the first
    image's size."""
    from ftool.data.image_files import IMAGE_FOLDER_LAYOUT, ImageFiles, VisibleImageFolder, read_image

    base = Path(root).expanduser().resolve()
    if not base.is_dir():
        raise FtoolError(f"data.root: image folder {base} {'is a file' if base.exists() else 'does not exist'}; "
                         f"{IMAGE_FOLDER_LAYOUT}")
    split_dirs = {s: base / s for s in ("train", "val", "test") if (base / s).is_dir()}
    train_dir = split_dirs.get("train", base)

    def scan(folder: Path, classes: list[str] | None = None) -> VisibleImageFolder:
        try:
            return VisibleImageFolder(folder, classes)
        except (FileNotFoundError, OSError) as e:
            raise FtoolError(f"data.root: {one_line(e)}") from None

    train = scan(train_dir)
    channels = 1 if grayscale else 3
    first = train.samples[0][0]
    if is_size(image_size):
        image_size = [image_size, image_size]
    size = checked_shape("data.image_size", image_size, "[32,32]", dims=2) if image_size else \
        read_image(first, "data.root", lambda image: (image.height, image.width))
    others = {}
    for split in ("val", "test"):
        if split in split_dirs:
            # labelled by train's classes: a test folder may lack some (no photos of one yet)
            others[split] = ImageFiles(scan(split_dirs[split], train.classes), size, channels)
    stats = IMAGENET_STATS if channels == 3 else ((0.5,), (0.5,))
    info = DataInfo("classification", (channels, *size), len(train.classes), list(train.classes), *stats)
    return Splits(train=ImageFiles(train, size, channels), info=info, **others)
