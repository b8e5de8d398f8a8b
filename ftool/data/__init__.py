"""Datasets; importing this package registers them all in `ftool.registry.DATASETS`.

A dataset builder returns `Splits`: the training set, the test set where the data has one (else
ftool holds out `data.test_fraction`), an optional validation set, and `DataInfo`, which tells the
model its input shape and outputs. Samples are (input tensor, target) pairs; images come as uint8
or float tensors (C, H, W) and the transforms in `ftool.data.transforms` do the rest; texts come
as token ids, which `Splits.collate` pads into batches (`ftool.data.text`).
"""

from __future__ import annotations

import collections
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from torch.utils.data import Dataset

from ftool.errors import FtoolError
from ftool.rundir import RunDir, read_saved, where_it_ran
from ftool.values import is_size


@dataclass
class DataInfo:
    task: str  # "classification" | "regression"
    input_shape: tuple[int, ...]
    num_outputs: int  # classes, or regression targets
    class_names: list[str] = field(default_factory=list)
    mean: Optional[tuple[float, ...]] = None  # per-channel normalization; None: leave inputs as is
    std: Optional[tuple[float, ...]] = None
    text: bool = False  # token ids (input_shape is (max_length,)): batches are dicts for text models
    # how data=table read its table: {"features": [...], "target": [...], "task", "categorical": {column:
    # [values]}, "missing": {column: fill value}}; new tables given to the run (eval, predict) are read
    # the same: by these names, whatever their order, encoded by these values and filled with these
    columns: dict = field(default_factory=dict)
    # regression targets' mean and std (data=table's, from its training rows): the model learns the
    # targets standardized and answers in their units (ftool.models.scale_outputs); None: as they are
    target_mean: Optional[tuple[float, ...]] = None
    target_std: Optional[tuple[float, ...]] = None

    def to_json(self) -> dict:
        """As summary.json's `data` records it, which `from_json` reads back (eval, predict, export)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "DataInfo":
        known = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}  # older runs lack some
        tuples = {key: tuple(known[key]) for key in ("input_shape", "mean", "std", "target_mean", "target_std")
                  if known.get(key) is not None}
        return cls(**{**known, **tuples})

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3 and not self.text


@dataclass
class Splits:
    train: Dataset
    info: DataInfo
    test: Optional[Dataset] = None
    val: Optional[Dataset] = None
    collate: Optional[Callable] = None  # the DataLoader's collate_fn (text: dynamic padding)


# Image files ftool reads: torchvision's ImageFolder's suffixes, and those PIL reads too that people's
# folders hold (GIF, Windows' .jfif and .jpe JPEGs, AVIF from phones and the web, TGA, netpbm's).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp",
                  ".gif", ".jfif", ".jpe", ".avif", ".pbm", ".pnm", ".tga")
# Images PIL cannot read (an iPhone's HEIC, cameras' raw files, vector drawings): named, not passed over.
UNREAD_IMAGE_SUFFIXES = (".heic", ".heif", ".svg", ".dng", ".cr2", ".nef", ".arw", ".raw")


def unread_images(paths) -> str:
    """What to tell of the images among `paths` that ftool cannot read ('' where there are none)."""
    counts = collections.Counter(Path(p).suffix.lower() for p in paths
                                 if Path(p).suffix.lower() in UNREAD_IMAGE_SUFFIXES)
    files = ", ".join(f"{n} {suffix} file{'' if n == 1 else 's'}" for suffix, n in sorted(counts.items()))
    return f"{files}, which ftool cannot read (convert to JPEG or PNG)" if counts else ""


def is_hidden(path: Path, root: Path) -> bool:
    """A hidden file or folder, or one inside a hidden folder, under `root` (Jupyter's
    .ipynb_checkpoints/, macOS's ._photo.png): no data, whatever its name says."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def checked_shape(key: str, sizes, example: str, dims: int | None = None) -> tuple[int, ...]:
    """A shape a user sets (data.shape, data.image_size): sizes >= 1, `dims` of them where given."""
    shape = tuple(sizes)
    if not shape or (dims and len(shape) != dims) or not all(map(is_size, shape)):
        count = f"{dims} " if dims else ""
        raise FtoolError(f"{key}: expected a list of {count}positive sizes such as {example}, got {list(shape)}")
    return shape


def check_data_fits_run(info: DataInfo, trained: dict | None, command: str) -> None:
    """Data given to a trained run (`ftool eval ... data.root=<new images>`, a resume) must be
    labelled with its classes in its order, and shaped as its inputs were: otherwise each label would
    be scored or trained against another class's output, silently. `trained`: summary.json's
    description of the run's data (none from a run that failed before training, which has no weights)."""
    if not trained:
        return
    if trained["class_names"] and info.class_names != trained["class_names"]:
        raise FtoolError(f"data: its classes ({_listed(info.class_names)}) are not those the run was trained on "
                         f"({_listed(trained['class_names'])}); {command} needs data with the run's classes")
    shape, run_shape = list(info.input_shape), trained["input_shape"]
    if not info.text and shape != run_shape:  # text length (max_length) does not shape a text model
        hint = f"; data.image_size=[{run_shape[1]},{run_shape[2]}] resizes images" if info.is_image else ""
        raise FtoolError(f"data: its inputs are {_shape(shape)}, the run's model takes {_shape(run_shape)}{hint}")
    if info.num_outputs != trained["num_outputs"]:
        raise FtoolError(f"data: it has {info.num_outputs} targets, the run's model predicts {trained['num_outputs']}")


# With the data itself, these decide which samples a run trained on and which it held out.
SPLIT_SETTINGS = ("split_seed", "val_fraction", "test_fraction", "test_size", "folds", "fold")


def check_read_as_trained(data, run: RunDir, own_splits: str | None = None) -> None:
    """Data settings of a trained run that a command reading data for it (eval, a resume) may not
    change (predict and export take none: cli.check_settings_that_change_nothing), as its results
    would be wrong without a word. `normalize`: the model takes inputs scaled as in training. Given
    `own_splits` (what to do instead: evaluating a split, resuming), on the run's own data: the split
    settings, whose change moves samples it trained on into the held-out ones."""
    saved = (read_saved(run) or {}).get("data")
    if not saved:
        return
    if "normalize" in saved and data.normalize != saved["normalize"]:
        raise FtoolError(f"{_setting('normalize', data.normalize)}: the run's model takes its inputs as it trained on "
                         f"them ({_setting('normalize', saved['normalize'])}); leave data.normalize as the run had it")
    if own_splits:
        check_same_splits(data, run, f"the run held out its samples with {{held}}; on its own data other split "
                                     f"settings put samples it trained on into the held-out ones; {own_splits}")


def check_same_splits(data, run: RunDir, why: str) -> None:
    """On the data `run` trained on, `data`'s split settings must be the run's, else samples it trained
    on would be held out as unseen: an error saying `why` (its `{held}`: the run's settings)."""
    saved = (read_saved(run) or {}).get("data") or {}
    changed = [k for k in SPLIT_SETTINGS if k in saved and getattr(data, k) != saved[k]]
    if changed and _same_source(data, saved, run):
        held = ", ".join(_setting(k, saved[k]) for k in changed)
        raise FtoolError(f"{_setting(changed[0], getattr(data, changed[0]))}: {why.replace('{held}', held)}")


def _setting(key: str, value) -> str:
    return f"data.{key}={'null' if value is None else str(value).lower() if isinstance(value, bool) else value}"


def same_source(data, run: RunDir) -> bool:
    """Is `data` the data the run trained on: the same dataset, with the same settings (a relative
    path named from where the run started and from here alike)?"""
    return _same_source(data, (read_saved(run) or {}).get("data") or {}, run)


def _same_source(data, saved: dict, run: RunDir) -> bool:
    if data.name != saved.get("name"):
        return False
    typed = {f.name for f in dataclasses.fields(data)}
    ran_in = where_it_ran(run) or Path.cwd()
    for key in set(data.args) | {k for k in saved if k not in typed}:
        now, then = data.args.get(key), saved.get(key)
        if now != then and not (isinstance(now, str) and isinstance(then, str)
                                and (Path.cwd() / now).resolve() == (ran_in / then).resolve()):
            return False
    return True


def _listed(names: list[str], most: int = 8) -> str:
    return ", ".join(names) if len(names) <= most else f"{', '.join(names[:most])}, ... {len(names)} in all"


def _shape(shape: list[int]) -> str:
    return "x".join(map(str, shape))


from ftool.data import tabular, text, vision  # noqa: E402,F401  (registration)
