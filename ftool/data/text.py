"""Text classification data: sentences in files (`text_files`), a CSV/JSONL table (`text_csv`), or
a Hugging Face hub dataset (`imdb`, `sst2`, `rotten_tomatoes`), tokenized with the model's tokenizer.

Texts are tokenized once and cached (safetensors, keyed by the texts, the tokenizer and max_length),
so a second run skips it. Batches are padded to their own longest sentence (dynamic padding): a
sample is (token ids, label) and `PadBatch` turns a list of them into ({input_ids, attention_mask},
labels), the dict the text models take.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ftool import hub
from ftool.data import DataInfo, Splits, is_hidden
from ftool.data.classes import check_split_classes
from ftool.data.tables import TABLE_SUFFIXES, check_columns, read_rows, read_text, split_labels
from ftool.errors import FtoolError, one_line
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
        longest = max(len(t) for t in ids)
        input_ids = torch.full((len(ids), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), longest), dtype=torch.long)
        for row, t in enumerate(ids):
            input_ids[row, :len(t)] = t
            mask[row, :len(t)] = 1
        labels = torch.stack([torch.as_tensor(s[1]) for s in samples])
        return {"input_ids": input_ids, "attention_mask": mask}, labels


def cache_dir() -> Path:
    """Where tokenized data is kept: $FTOOL_CACHE_DIR, else ~/.cache/ftool (XDG_CACHE_HOME honoured)."""
    if os.environ.get("FTOOL_CACHE_DIR"):
        return Path(os.environ["FTOOL_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "ftool"


def _tokenizer_identity(tokenizer) -> str:
    """What decides the token ids: the whole fast tokenizer (vocab, normalizer, ...) when it can
    be serialized, else its class and vocabulary. Its truncation and padding settings are left
    out: they are the last call's (max_length is part of the cache key on its own)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        return json.dumps(state, sort_keys=True)
    return f"{type(tokenizer).__name__}:{json.dumps(tokenizer.get_vocab(), sort_keys=True)}"


def encode(texts: list[str], tokenizer, max_length: int) -> list[torch.Tensor]:
    """Token ids of each text, special tokens included, cut to max_length."""
    return [torch.tensor(e, dtype=torch.long) for e in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]


TOKENIZE_CHUNK = 2000  # texts per call of the tokenizer: the progress bar's step


def _encode_with_progress(texts: list[str], tokenizer, max_length: int) -> list[torch.Tensor]:
    """`encode` in chunks, with a progress bar (IMDB's 25,000 reviews take about 10 s on 2 cores)."""
    from ftool.engine.progress import EvalProgress
    from ftool.rundir import is_main_process

    starts = range(0, len(texts), TOKENIZE_CHUNK)
    progress = EvalProgress(len(starts) > 1 and is_main_process(), f"tokenize {len(texts):,} texts", len(starts))
    ids = []
    try:
        for start in starts:
            ids += encode(texts[start:start + TOKENIZE_CHUNK], tokenizer, max_length)
            progress.advance()
    finally:
        progress.close()
    return ids


def tokenize(texts: list[str], tokenizer, max_length: int) -> list[torch.Tensor]:
    """`encode`, cached on disk."""
    from safetensors.torch import load_file
    from safetensors.torch import save as safetensors_bytes

    from ftool.engine.atomic import atomic_write

    key = hashlib.sha256()
    key.update(f"{max_length}\0{_tokenizer_identity(tokenizer)}\0".encode())
    for t in texts:
        key.update(t.encode() + b"\0")
    path = cache_dir() / "tokens" / f"{key.hexdigest()[:32]}.safetensors"
    if path.is_file():
        try:
            stored = load_file(path)
            return list(torch.split(stored["ids"].long(), stored["lengths"].tolist()))
        except Exception:  # a damaged file (safetensors, torch and the OS raise different errors): made again below
            pass
    ids = _encode_with_progress(texts, tokenizer, max_length)
    lengths = torch.tensor([len(t) for t in ids], dtype=torch.long)
    flat = torch.cat(ids).int() if ids else torch.zeros(0, dtype=torch.int32)
    try:
        atomic_write(path, safetensors_bytes({"ids": flat, "lengths": lengths}))
    except OSError as e:  # a read-only or full disk: the cache only saves time, the run goes on
        from ftool.engine.progress import warn

        warn(f"tokenized texts not cached ({one_line(e)}); FTOOL_CACHE_DIR=<folder> puts the cache elsewhere")
    return ids


def texts_cut(ids: list[torch.Tensor], max_length: int) -> str | None:
    """How many texts fill data.max_length tokens, which longer texts are cut to: a larger max_length
    reads more of them (IMDB's reviews at 128 tokens, most of them)."""
    full = sum(len(t) == max_length for t in ids)
    return (f"{full:,} of {len(ids):,} texts ({full / len(ids):.1%}) fill data.max_length={max_length} tokens, "
            f"where longer ones are cut") if full else None


def text_splits(splits: dict[str, tuple[list[str], list[int]]], class_names: list[str], tokenizer,
                max_length: int) -> Splits:
    """Splits of TokenizedTexts from {"train"|"val"|"test": (texts, labels)}."""
    if tokenizer is None:
        raise FtoolError("data: text data is tokenized with the model's tokenizer; use a text model "
                         "(model=hf_classifier)")
    if max_length < 2:
        raise FtoolError(f"data.max_length: must be >= 2, got {max_length}")
    limit = tokenizer.model_max_length  # the model's (models.hf.load_tokenizer), or 10^30 where unknown
    if max_length > limit:  # longer texts would fail in the model's position embeddings
        raise FtoolError(f"data.max_length: {max_length} is more tokens than the model takes ({limit}); give "
                         f"data.max_length={limit} or less")
    made = {name: TokenizedTexts(tokenize(texts, tokenizer, max_length), torch.tensor(labels, dtype=torch.long))
            for name, (texts, labels) in splits.items()}
    cut = texts_cut([t for split in made.values() for t in split.ids], max_length)
    if cut:
        from ftool.engine.progress import note

        note(f"data: {cut}")
    info = DataInfo("classification", (max_length,), len(class_names), class_names, text=True)
    return Splits(train=made["train"], info=info, test=made.get("test"), val=made.get("val"),
                  collate=PadBatch(tokenizer.pad_token_id or 0))


# Files a data folder often holds beside its class files (MR's own download has a README .txt).
_NOT_CLASS_SUFFIXES = {*TABLE_SUFFIXES, ".md", ".rst", ".html", ".pdf", ".yaml", ".yml", ".py", ".sh", ".zip", ".gz",
                       ".tar", ".tgz", ".bz2", ".xz", ".7z"}


def _not_a_class(path: Path) -> bool:
    """A hidden file, a README, a licence, or a file of another format: documentation or data of
    another kind. (Upper case, as such files are named: a class file `license.txt` stays a class.)"""
    return (path.name.startswith(".") or path.suffix.lower() in _NOT_CLASS_SUFFIXES or "README" in path.name
            or path.name.startswith(("LICENSE", "LICENCE", "COPYING")))


@DATASETS.register("text_files")
def text_files(root: str, tokenizer, max_length: int = 128, pattern: str = "*") -> Splits:
    """Texts whose class the folder's layout gives:
    - one file per class, one text per line: root/rt-polarity.pos, root/rt-polarity.neg. The class
      name is the file's suffix (`pos`), or its stem for .txt files (`pos.txt` -> `pos`);
    - a folder per class, one text per file: root/pos/*.txt, or root/{train,val,test}/pos/*.txt
      (IMDB's own download, aclImdb), where those folders are the splits.
    `pattern` picks the class files, or the files in the class folders."""
    base = Path(root).expanduser().resolve()
    if base.suffix.lower() in TABLE_SUFFIXES and base.is_file():  # a table of texts and labels
        raise FtoolError(f"data.root: {base} is a table; data=text_files reads a folder of text files, "
                         f"data=text_csv a table: data=text_csv data.path={base}")
    if not base.is_dir():
        raise FtoolError(f"data.root: {base} {'is a file' if base.exists() else 'does not exist'}; expected a folder "
                         f"of one text file per class, or of a folder per class")
    if (base / "train").is_dir():
        train, names = _texts_of_class_folders(base / "train", pattern)
        splits = {"train": train}
        for split in ("val", "test"):
            if (base / split).is_dir():  # labelled by train's classes, of which it may hold some only
                splits[split] = _texts_of_class_folders(base / split, pattern, names)[0]
        return text_splits(splits, names, tokenizer, max_length)
    files = sorted(p for p in base.glob(pattern) if p.is_file() and not _not_a_class(p))
    if len(files) < 2 and _visible_folders(base):
        train, names = _texts_of_class_folders(base, pattern)
        return text_splits({"train": train}, names, tokenizer, max_length)
    if len(files) < 2:
        raise FtoolError(f"data.root: {base} has {len(files)} file(s) matching {pattern!r}; text_files needs one "
                         f"file per class (at least 2), one text per line, or a folder per class")
    names = [p.stem if p.suffix in ("", ".txt") else p.suffix[1:] for p in files]
    if len(set(names)) != len(names):
        raise FtoolError(f"data.root: two files give the same class name: {', '.join(p.name for p in files)}")
    order = sorted(range(len(files)), key=lambda i: names[i])
    texts, labels = [], []
    for label, i in enumerate(order):
        kept = [ln.strip() for ln in read_text(files[i], "data.root").splitlines() if ln.strip()]
        if not kept:  # a class with nothing to learn from
            raise FtoolError(f"data.root: {files[i]} holds no text; each class file needs some, one per line")
        texts += kept
        labels += [label] * len(kept)
    return text_splits({"train": (texts, labels)}, [names[i] for i in order], tokenizer, max_length)


def _visible_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def texts_in_folder(folder: Path, what: str, pattern: str = "*") -> list[tuple[Path, str]]:
    """(file, its whole text) for each text file under `folder`, its subfolders' too; hidden files,
    READMEs and files of other formats are skipped, and empty files left out."""
    files = sorted(p for p in folder.rglob(pattern) if p.is_file() and not _not_a_class(p)
                   and not is_hidden(p, folder))
    read = ((path, read_text(path, what).strip()) for path in files)
    return [(path, text) for path, text in read if text]


def _texts_of_class_folders(folder: Path, pattern: str, classes: list[str] | None = None):
    """((texts, labels), class names) of folder/<class>/<file>, a text per file (its subfolders'
    too; empty files are skipped). `classes`: label by these (the train folder's); a folder of
    another class is an error."""
    found = [p.name for p in _visible_folders(folder)]
    if classes is not None:
        check_split_classes(f"data.root: {folder}", found, classes)
    names = classes or found
    if len(names) < 2:
        raise FtoolError(f"data.root: {folder} has {len(names)} class folder(s); a classifier needs at least 2")
    texts, labels = [], []
    for label, name in enumerate(names):
        found = [text for _, text in texts_in_folder(folder / name, "data.root", pattern)]
        if not found and classes is None:  # a training class with nothing to learn from
            raise FtoolError(f"data.root: {folder / name} holds no text files matching {pattern!r}; each class "
                             f"folder needs some")
        texts += found
        labels += [label] * len(found)
    if not texts:
        raise FtoolError(f"data.root: {folder}'s class folders hold no text files matching {pattern!r}")
    return (texts, labels), names


def rows_with_text(rows: list[dict], column: str) -> list[dict]:
    """The rows with a text in `column`: the others are skipped, like text_files' blank lines."""
    return [r for r in rows if r[column] is not None and str(r[column]).strip()]


def _read_table(path: Path, text_column: str, label_column: str) -> tuple[list[str], list]:
    """(texts, labels) of a table's rows with a text."""
    rows = read_rows(path, "data")
    check_columns(rows, path, "data", (text_column, label_column), "data.text_column, data.label_column name them")
    for n, row in enumerate(rows, 1):
        if row[label_column] is None or str(row[label_column]).strip() == "":
            raise FtoolError(f"data: {path} row {n} has no label (its {label_column!r} is empty)")
    kept = rows_with_text(rows, text_column)
    return [str(r[text_column]) for r in kept], [r[label_column] for r in kept]


@DATASETS.register("text_csv")
def text_csv(path: str, tokenizer, text_column: str = "text", label_column: str = "label",
             test_path: str | None = None, val_path: str | None = None, max_length: int = 128) -> Splits:
    """A table of texts and labels: CSV, TSV or JSON lines; labels are class names or whole numbers.
    Without test_path (val_path) a test (validation) split is held out of `path`."""
    tables = {"train": path, "test": test_path, "val": val_path}
    read = {split: _read_table(Path(p).expanduser().resolve(), text_column, label_column)
            for split, p in tables.items() if p}
    indices, names = split_labels({split: labels for split, (_, labels) in read.items()}, tables)
    splits = {split: (texts, indices[split]) for split, (texts, _) in read.items()}
    return text_splits(splits, names, tokenizer, max_length)


# Hugging Face hub datasets: (hub id, the split used as test, text column).
_HUB = {"imdb": ("stanfordnlp/imdb", "test", "text"),
        "sst2": ("stanfordnlp/sst2", "validation", "sentence"),  # its test split has no labels
        "rotten_tomatoes": ("cornell-movie-review-data/rotten_tomatoes", "test", "text")}


def _hub_dataset(name: str, tokenizer, max_length: int, cache: str | None) -> Splits:
    hub_id, test_split, column = _HUB[name]
    try:
        import datasets
    except ImportError:
        raise FtoolError(f"data={name} loads through Hugging Face datasets: pip install 'ftool[text]'") from None
    datasets.disable_progress_bars()
    offline = hub.offline()
    try:
        loaded = datasets.load_dataset(hub_id, cache_dir=cache)
    except Exception as e:  # offline, unknown id, damaged cache: many exception types
        reason = ("it is not in the cache and the hub is out of reach" if offline
                  else f"{type(e).__name__}: {one_line(e)}")
        raise FtoolError(f"data={name}: cannot load {hub_id} from the Hugging Face hub or its cache ({reason}); "
                         f"on a machine without internet, copy the dataset into the cache (HF_HOME) or use "
                         f"data=text_csv") from None
    names = list(loaded["train"].features["label"].names)
    splits = {"train": (loaded["train"][column], loaded["train"]["label"]),
              "test": (loaded[test_split][column], loaded[test_split]["label"])}
    if test_split != "validation" and "validation" in loaded:
        splits["val"] = (loaded["validation"][column], loaded["validation"]["label"])
    return text_splits(splits, names, tokenizer, max_length)


@DATASETS.register("imdb")
def imdb(tokenizer, max_length: int = 128, cache_dir: str | None = None) -> Splits:
    """50,000 movie reviews (25,000 train, 25,000 test), positive or negative."""
    return _hub_dataset("imdb", tokenizer, max_length, cache_dir)


@DATASETS.register("sst2")
def sst2(tokenizer, max_length: int = 128, cache_dir: str | None = None) -> Splits:
    """Stanford Sentiment Treebank, binary; its validation split is the test split."""
    return _hub_dataset("sst2", tokenizer, max_length, cache_dir)


@DATASETS.register("rotten_tomatoes")
def rotten_tomatoes(tokenizer, max_length: int = 128, cache_dir: str | None = None) -> Splits:
    """The MR sentences (as in rt-polarity) with the hub's train/validation/test split."""
    return _hub_dataset("rotten_tomatoes", tokenizer, max_length, cache_dir)
