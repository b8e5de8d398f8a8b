"""Text classification data: sentences in files (`text_files`), a table of texts and labels
(`text_csv`), tokenized with the model's tokenizer (`data=hf` reads hub datasets through these too).

Texts are tokenized once and cached (safetensors, keyed by the texts, the tokenizer and max_length).
Batches are padded to their own longest text: a sample is (token ids, label), and `PadBatch` makes a
list of them ({input_ids, attention_mask}, labels), the dict the text models take.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ftool.data import DataInfo, Splits
from ftool.data.tabular import TABLE_SUFFIXES, labels_by_split, read_table
from ftool.registry import DATASETS


class TokenizedTexts(Dataset):
    """Token id sequences (one tensor each) and their labels."""

    def __init__(self, ids: list[torch.Tensor], labels: torch.Tensor):
        self.ids, self.labels = ids, labels

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return self.ids[i], self.labels[i]

    def lengths(self) -> list[int]:
        return [len(t) for t in self.ids]


class PadBatch:
    """collate_fn: pad a batch's token ids to its longest sequence, with an attention mask."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, samples):
        ids = [s[0] for s in samples]
        input_ids = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=self.pad_id)
        mask = torch.nn.utils.rnn.pad_sequence([torch.ones_like(t) for t in ids], batch_first=True)
        return {"input_ids": input_ids, "attention_mask": mask}, torch.stack([torch.as_tensor(s[1]) for s in samples])


def encode(texts: list[str], tokenizer, max_length: int) -> list[torch.Tensor]:
    """Token ids of each text, special tokens included, cut to max_length."""
    return [torch.tensor(e, dtype=torch.long) for e in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]


def tokenize(texts: list[str], tokenizer, max_length: int) -> list[torch.Tensor]:
    """`encode`, cached under $FTOOL_CACHE_DIR (default ~/.cache/ftool)."""
    from safetensors.torch import load_file, save

    from ftool.engine.atomic import atomic_write

    state = json.loads(tokenizer.backend_tokenizer.to_str())  # what decides the ids: not the last call's
    state.pop("truncation"), state.pop("padding")  # truncation and padding
    key = hashlib.sha256(f"{max_length}\0{json.dumps(state, sort_keys=True)}\0".encode())
    for t in texts:
        key.update(t.encode() + b"\0")
    cache = Path(os.environ.get("FTOOL_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "ftool")
    path = cache.expanduser() / "tokens" / f"{key.hexdigest()[:32]}.safetensors"
    if path.is_file():
        stored = load_file(path)
        return list(torch.split(stored["ids"].long(), stored["lengths"].tolist()))
    ids = encode(texts, tokenizer, max_length)
    lengths = torch.tensor([len(t) for t in ids], dtype=torch.long)
    with contextlib.suppress(OSError):  # (a read-only cache costs the next run time, not this run)
        atomic_write(path, save({"ids": torch.cat(ids).int() if ids else torch.zeros(0, dtype=torch.int32),
                                 "lengths": lengths}))
    return ids


def texts_cut(ids: list[torch.Tensor], max_length: int) -> str | None:
    """How many texts fill data.max_length tokens, where longer ones are cut."""
    full = sum(len(t) == max_length for t in ids)
    return (f"{full:,} of {len(ids):,} texts ({full / len(ids):.1%}) fill data.max_length={max_length} tokens, "
            f"where longer ones are cut") if full else None


def text_splits(splits: dict[str, tuple[list[str], list[int]]], class_names: list[str], tokenizer,
                max_length: int) -> Splits:
    """Splits of TokenizedTexts from {"train"|"val"|"test": (texts, labels)}."""
    from ftool.engine.progress import note

    made = {name: TokenizedTexts(tokenize(texts, tokenizer, max_length), torch.tensor(labels, dtype=torch.long))
            for name, (texts, labels) in splits.items()}
    cut = texts_cut([t for split in made.values() for t in split.ids], max_length)
    if cut:
        note(f"data: {cut}")
    info = DataInfo("classification", (max_length,), len(class_names), class_names, text=True)
    return Splits(train=made["train"], info=info, test=made.get("test"), val=made.get("val"),
                  collate=PadBatch(tokenizer.pad_token_id or 0))


def _is_text_file(path: Path, pattern: str) -> bool:
    """A file of texts: not hidden, not a README or licence, not a table or archive."""
    return (path.is_file() and path.match(pattern) and not path.name.startswith(".") and "README" not in path.name
            and not path.name.startswith(("LICENSE", "LICENCE")) and path.suffix.lower() not in
            (*TABLE_SUFFIXES, ".md", ".zip", ".gz", ".tar", ".tgz"))


def texts_in_folder(folder: Path, pattern: str = "*") -> list[tuple[Path, str]]:
    """(file, its text) for each non-empty text file under `folder`, its subfolders' too."""
    files = sorted(p for p in folder.rglob("*") if _is_text_file(p, pattern)
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return [(p, text) for p in files if (text := p.read_text(encoding="utf-8-sig").strip())]


def _class_folders(folder: Path, pattern: str, classes: list[str] | None = None):
    """((texts, labels), class names) of folder/<class>/<file>, a text per file; `classes`: label by these."""
    names = classes or sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    texts, labels = [], []
    for label, name in enumerate(names):
        found = [text for _, text in texts_in_folder(folder / name, pattern)] if (folder / name).is_dir() else []
        texts += found
        labels += [label] * len(found)
    return (texts, labels), names


@DATASETS.register("text_files")
def text_files(root: Path, tokenizer, max_length: int = 128, pattern: str = "*") -> Splits:
    """Texts whose class the folder's layout gives:
    - one file per class, one text per line: root/rt-polarity.pos, root/rt-polarity.neg (the class is the
      suffix, or the stem of a .txt file);
    - a folder per class, one text per file: root/pos/*.txt, or root/{train,val,test}/pos/*.txt (IMDB's
      own download), where those folders are the splits."""
    base = Path(root)
    if (base / "train").is_dir():
        train, names = _class_folders(base / "train", pattern)
        splits = {"train": train, **{s: _class_folders(base / s, pattern, names)[0] for s in ("val", "test")
                                     if (base / s).is_dir()}}
        return text_splits(splits, names, tokenizer, max_length)
    files = sorted(p for p in base.iterdir() if _is_text_file(p, pattern))
    if len(files) < 2:
        train, names = _class_folders(base, pattern)
        return text_splits({"train": train}, names, tokenizer, max_length)
    names = [p.stem if p.suffix in ("", ".txt") else p.suffix[1:] for p in files]
    texts, labels = [], []
    for label, i in enumerate(sorted(range(len(files)), key=names.__getitem__)):
        kept = [line.strip() for line in files[i].read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        texts += kept
        labels += [label] * len(kept)
    return text_splits({"train": (texts, labels)}, sorted(names), tokenizer, max_length)


@DATASETS.register("text_csv")
def text_csv(path: Path, tokenizer, text_column: str = "text", label_column: str = "label",
             test_path: Path | None = None, val_path: Path | None = None, max_length: int = 128) -> Splits:
    """A table (CSV, TSV, JSON, Parquet) of texts and labels (class names or whole numbers); without
    test_path (val_path) a test (validation) split is held out of `path`. Rows without a text are skipped."""
    frames = {s: read_table(p) for s, p in (("train", path), ("test", test_path), ("val", val_path)) if p}
    frames = {s: f[f[text_column].notna() & (f[text_column].astype(str).str.strip() != "")] for s, f in frames.items()}
    labels, names = labels_by_split({s: f[label_column] for s, f in frames.items()})
    splits = {s: (f[text_column].astype(str).tolist(), labels[s]) for s, f in frames.items()}
    return text_splits(splits, names, tokenizer, max_length)
