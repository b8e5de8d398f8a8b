"""`data=hf`: any dataset `datasets.load_dataset` reads: a Hugging Face hub id, a local folder (an image
folder, a folder of CSV files), or data files (CSV, JSON, Parquet), of texts or images and their labels.
imdb, sst2 and rotten_tomatoes are presets of it."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from ftool.data import Splits
from ftool.data.tabular import labels_by_split
from ftool.data.text import text_splits
from ftool.data.vision import image_tensor, photo_info
from ftool.errors import ConfigError
from ftool.registry import DATASETS

_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".txt": "text"}


class HFImages(Dataset):
    """A split's images decoded to uint8 (C, H, W) tensors of one size, and their label indices."""

    def __init__(self, split, column: str, labels: list[int], channels: int, size):
        self.split, self.column, self.labels, self.channels, self.size = split, column, labels, channels, size

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return image_tensor(self.split[i][self.column], self.channels, self.size), self.labels[i]


def _load(path: str, subset: str | None, data_files, cache_dir: str | None):
    import datasets

    datasets.disable_progress_bars()
    local = Path(path).expanduser()
    if local.is_file():  # a file of one's own: the builder its suffix names (datasets takes folders and ids as they are)
        return datasets.load_dataset(_BUILDERS.get(local.suffix.lower(), local.suffix[1:]), data_files=str(local),
                                     cache_dir=cache_dir)
    return datasets.load_dataset(str(local) if local.is_dir() else path, subset, data_files=data_files,
                                 cache_dir=cache_dir)


@DATASETS.register("hf")
def hf(path: str, tokenizer, subset: str | None = None, data_files: dict | list | str | None = None,
       text_column: str | None = None, image_column: str | None = None, label_column: str = "label",
       splits: dict | None = None, max_length: int = 128, image_size: list | int | None = None,
       grayscale: bool = False, cache_dir: str | None = None) -> Splits:
    """`subset`: the dataset's configuration (glue's `sst2`). `splits` maps ftool's train/val/test to the
    dataset's split names (default: train, validation, test, where it has them; ftool holds out what it
    lacks, or what is mapped to null). The text (image) column defaults to the first of text/sentence
    (of image features); the labels' names to their ClassLabel's."""
    import datasets

    loaded = _load(path, subset, data_files, cache_dir)
    chosen = {"train": "train", "val": "validation", "test": "test", **(splits or {})}
    parts = {ours: loaded[theirs] for ours, theirs in chosen.items() if theirs and theirs in loaded}
    if "train" not in parts:
        raise ConfigError(f"data.splits: {path} has the splits {', '.join(loaded)}; map one to train "
                          f"(data.splits.train=<split>)")
    features = parts["train"].features
    image = image_column or next((c for c, f in features.items() if isinstance(f, datasets.Image)), None)
    text = text_column or (None if image else next((c for c in ("text", "sentence") if c in features), None))
    missing = [c for c in (image or text, label_column) if c not in features]
    if missing:
        raise ConfigError(f"data: {path} has no column {missing[0]!r}; its columns: {', '.join(features)} "
                          f"(data.text_column, data.image_column, data.label_column)")
    label = features[label_column]
    if isinstance(label, datasets.ClassLabel):
        names, labels = list(label.names), {s: list(d[label_column]) for s, d in parts.items()}
    else:  # class names or whole numbers, as data=text_csv reads them
        labels, names = labels_by_split({s: d[label_column] for s, d in parts.items()})
    if text:
        if tokenizer is None:
            raise ConfigError(f"data=hf: {path} holds texts; train them with a text model (model=hf_classifier)")
        return text_splits({s: (list(d[text]), labels[s]) for s, d in parts.items()}, names, tokenizer, max_length)
    info = photo_info(names, image_size or parts["train"][0][image].size[::-1], grayscale)
    made = {s: HFImages(d, image, labels[s], info.input_shape[0], info.input_shape[1:]) for s, d in parts.items()}
    return Splits(train=made["train"], info=info, test=made.get("test"), val=made.get("val"))
