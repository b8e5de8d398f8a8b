"""Tables and text files as people save them: CSV, TSV (quoting nothing), JSON and Parquet, UTF-8 with
or without the byte-order mark; labels as names or whole numbers. Space around a column's name or a
value is not part of it (`pos ` is the class `pos`)."""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import shlex
import sys
from pathlib import Path

from ftool.data.classes import check_split_classes
from ftool.errors import FtoolError, one_line

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")  # .json: JSON lines, or a JSON list of rows
_DECIMAL_COMMA = re.compile(r"^\s*([+-]?\d+),(\d+)\s*$")  # 1,5 in a table Excel saved with ';' between values
_OTHER_FORMATS = {".xlsx": "an Excel workbook", ".xls": "an Excel workbook", ".ods": "a spreadsheet",
                  ".feather": "a Feather file", ".pkl": "a pickle", ".pickle": "a pickle"}


def read_text(path: Path | None, what: str) -> str:
    """A UTF-8 text file (None: standard input), without the byte-order mark Excel and Notepad put
    first, or UTF-16 with its byte-order mark (Excel's "Unicode Text", Windows' "Unicode"); another
    encoding is a one-line error (`what` names the setting that gave the path)."""
    if path is not None and path.suffix.lower() in _OTHER_FORMATS:  # (else: "not UTF-8 text")
        raise FtoolError(f"{what}: {path} is {_OTHER_FORMATS[path.suffix.lower()]}; ftool reads text, CSV, TSV, JSON "
                         f"and Parquet files: save it as CSV")
    data = sys.stdin.buffer.read() if path is None else path.read_bytes()
    try:
        return data.decode("utf-16" if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else "utf-8-sig")
    except UnicodeDecodeError as e:
        from ftool.data import IMAGE_SUFFIXES, UNREAD_IMAGE_SUFFIXES

        if path is not None and path.suffix.lower() in IMAGE_SUFFIXES + UNREAD_IMAGE_SUFFIXES:  # photos, to a text model
            raise FtoolError(f"{what}: {path} is an image, and this reads text (a text file, CSV, TSV, JSON or "
                             f"Parquet)") from None
        raise FtoolError(f"{what}: {path or 'standard input'} is not UTF-8 text ({e.reason} at byte {e.start}); "
                         f"{_conversion(data[max(0, e.start - 65536):e.start + 65536], path)}") from None


# The encodings of Chinese, Japanese and Korean text that Windows' Notepad and Excel save in. charset-normalizer
# tells these apart well, and Western ones less so (French text in Windows-1252 it read as Windows-1250,
# where è is č): those get no guess.
_EAST_ASIAN = {"gb18030", "gbk", "gb2312", "big5", "big5hkscs", "cp950", "cp932", "shift_jis", "euc_jp", "cp949",
               "euc_kr"}


def _conversion(sample: bytes, path: Path | None) -> str:
    """How to make UTF-8 of a text file: for Chinese, Japanese or Korean text saved in Windows' encoding
    for it (Notepad's GBK on a Chinese Windows), the encoding and iconv's command."""
    from charset_normalizer import from_bytes

    found = from_bytes(sample).best()
    name = codecs.lookup(found.encoding).name if found else ""
    letters = [c for c in str(found or "") if c.isalpha()]
    # Read so, Western text is ASCII letters with a character for each accented one and the letter after it
    # ("très" in Latin-1 reads as Big5), where Chinese, Japanese or Korean text is mostly their own letters.
    if name not in _EAST_ASIAN or 2 * sum(not c.isascii() for c in letters) < len(letters):
        return "save it as UTF-8"
    name = name.replace("_", "-").upper()  # iconv's spelling: SHIFT-JIS, GB18030
    source = shlex.quote(str(path)) if path else "-"
    target = shlex.quote(str(path.with_stem(path.stem + "-utf8"))) if path else "utf8.txt"
    return f"it reads as {name}: iconv -f {name} -t UTF-8 {source} > {target} makes a UTF-8 copy"


def labels_to_indices(labels: list) -> tuple[list[int], list[str]]:
    """Labels as given -> (indices, class names in index order). Whole numbers are classes in numeric
    order, named by their number: 0..k-1 keep their index, and 1-5 star ratings or -1/+1 make as many
    classes, with no empty class 0; written as decimals too (1.0: pandas writes a column of whole numbers
    with a gap so). Other labels are names, in text order."""
    def number(v):
        if isinstance(v, bool):
            return None
        try:
            value = float(str(v).strip())
        except ValueError:
            return None
        return int(value) if value.is_integer() else None

    if labels and all(number(v) is not None for v in labels):
        values = sorted({number(v) for v in labels})
        index = {v: i for i, v in enumerate(values)}
        return [index[number(v)] for v in labels], [str(v) for v in values]
    names = sorted({str(v) for v in labels})
    index = {name: i for i, name in enumerate(names)}
    return [index[str(v)] for v in labels], names


def read_rows(path: Path, what: str) -> list[dict]:
    """The rows of a CSV or TSV file with a header, of a JSON-lines file or JSON list, or of a Parquet
    file (`what` names the setting that gave the path, for errors)."""
    if not path.is_file():
        raise FtoolError(f"{what}: {path} is a folder; give a table file (CSV, TSV, JSON, Parquet)" if path.is_dir()
                         else f"{what}: {path} does not exist")
    if path.suffix.lower() == ".parquet":
        return [_typed_row(row, f"{path} row {n}", what) for n, row in enumerate(_parquet_rows(path, what), 1)]
    text, suffix = read_text(path, what), path.suffix.lower()
    header = text.partition("\n")[0]
    if suffix == ".tsv" or (suffix not in (".jsonl", ".json") and header.count("\t") > header.count(",")
                            and header.count("\t") > header.count(";")):  # (Excel's tab-separated .txt too)
        # TSV quotes nothing (GLUE's files, pandas' quoting=3): a quote is part of the text
        return _delimited(text, path, what, "\t", csv.QUOTE_NONE)
    if suffix not in (".jsonl", ".json"):
        if header.count(";") > header.count(","):  # Excel's CSV where the decimal mark is a comma: 1,5;3;100
            return [{k: _DECIMAL_COMMA.sub(r"\1.\2", v) if v else v for k, v in row.items()}
                    for row in _delimited(text, path, what, ";")]
        return _delimited(text, path, what, ",")
    return [_typed_row(row, f"{path}{where}", what) for where, row in _json_records(text, path, what, suffix)]


def _json_records(text: str, path: Path, what: str, suffix: str) -> list[tuple[str, object]]:
    """(where, value) of each row of JSON lines (one object per line), or of a .json file's one list of
    objects (`[{...}, {...}]`: json.dump of a list, pandas' `to_json(orient="records")`)."""
    if suffix == ".json" and text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise FtoolError(f"{what}: {path}:{e.lineno} is not JSON ({e.msg})") from None
        return [(f" row {n}", row) for n, row in enumerate(records, 1)]
    whole = _one_json_object(text)
    if whole is not None and (len(text.strip().splitlines()) > 1 or _holds_rows(whole)):
        # pretty-printed, {"data": [rows]}, or pandas' default to_json: a dict of columns
        raise FtoolError(f"{what}: {path} is one JSON object; ftool reads rows: one JSON object per line "
                         f"(JSON lines) or a list of them ([{{...}}, {{...}}])")
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append((f":{n}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise FtoolError(f"{what}: {path}:{n} is not a JSON object ({e.msg})") from None
    return rows


def _one_json_object(text: str) -> dict | None:
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:  # (JSON lines of two rows or more: "Extra data" after the first)
        return None
    return whole if isinstance(whole, dict) else None


def _holds_rows(obj: dict) -> bool:
    """Whether a JSON object holds a table rather than being a row of one: a dict, or a list of dicts, as a value."""
    return any(isinstance(v, dict) or isinstance(v, list) and any(isinstance(x, dict) for x in v) for v in obj.values())


def _parquet_rows(path: Path, what: str) -> list[dict]:
    """A Parquet file's rows (Hugging Face's hub stores datasets so), without the index pandas saves
    as a column (`__index_level_0__`)."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise FtoolError(f"{what}: {path} is a Parquet file, which needs pyarrow: pip install 'ftool[text]' (or "
                         f"save it as CSV)") from None
    try:
        table = pyarrow.parquet.read_table(path)
    except pyarrow.ArrowException as e:
        raise FtoolError(f"{what}: {path} is not a Parquet file ({one_line(e)})") from None
    return table.drop_columns([c for c in table.column_names if c.startswith("__index_level_")]).to_pylist()


def _typed_row(row, where: str, what: str) -> dict:
    """A JSON or Parquet row: an object of one value per column."""
    if not isinstance(row, dict):
        raise FtoolError(f"{what}: {where} is not a JSON object (a {type(row).__name__})")
    nested = [(k, v) for k, v in row.items() if isinstance(v, (list, dict))]
    if nested:  # (as text, ["pos"] would be a class of its own: a list of labels, a multi-label task)
        key, value = nested[0]
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise FtoolError(f"{what}: {where}: {key!r} is a {type(value).__name__} ({shown}); ftool reads "
                         f"one value per column (one class per row: several labels per row are not supported)")
    return {name.strip(): value.strip() if isinstance(value, str) else value for name, value in row.items()}


def _delimited(text: str, path: Path, what: str, delimiter: str, quoting: int = csv.QUOTE_MINIMAL) -> list[dict]:
    """A CSV or TSV table's rows by its header; a header naming a column twice, a row with more
    values than the header has names (csv would file them under None) and a quote never closed (its
    value would take the rest of the file) are errors."""
    csv.field_size_limit(2**31 - 1)  # a document longer than 128 KiB is one value too (csv's own limit)
    # skipinitialspace: `"a film", pos` as people type it, the quotes read as quotes and the label `pos`
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, skipinitialspace=True)
    if reader.fieldnames:
        reader.fieldnames = [name.strip() for name in reader.fieldnames]
    twice = [name for n, name in enumerate(reader.fieldnames or []) if name in reader.fieldnames[:n] and name]
    if twice:  # (csv would keep the last column of the name, silently)
        raise FtoolError(f"{what}: {path}'s header names {twice[0]!r} twice; give each column its own name")
    rows, ended = [], reader.line_num  # (the line the last row ended on)
    for row in reader:
        if None in row:
            raise FtoolError(f"{what}: {path} line {reader.line_num} has {len(row) - 1 + len(row[None])} values, "
                             f"and its header {len(reader.fieldnames)} names ({delimiter!r}-separated)")
        if None in row.values() and any("\n" in value for value in row.values() if value) \
                and reader.line_num == len(text.rstrip("\n").split("\n")):  # (a short row that ran to the end)
            raise FtoolError(f"{what}: {path} line {ended + 1}: a quote opened there is never closed, so its value "
                             f"takes the rest of the file; close it, or double a quote inside a value (\"\")")
        ended = reader.line_num
        rows.append({name: value.strip() if value else value for name, value in row.items()})  # ("pos " a class?)
    return rows


def check_columns(rows: list[dict], path: Path, what: str, columns: tuple[str, ...], hint: str) -> None:
    for n, row in enumerate(rows, 1):
        missing = [c for c in columns if c not in row]
        if missing:
            raise FtoolError(f"{what}: {path} row {n} has no column {missing[0]!r}; its columns: {', '.join(row)} "
                             f"({hint})")


def split_labels(labels: dict[str, list], tables: dict[str, str]) -> tuple[dict[str, list[int]], list[str]]:
    """Each split's labels (train, test, val: read from `tables`) as class indices that all splits
    share, and the class names. A test or val table's class that train's lacks is an error."""
    indices, names = labels_to_indices([v for values in labels.values() for v in values])
    by_split, at = {}, 0
    for split, values in labels.items():
        by_split[split], at = indices[at:at + len(values)], at + len(values)
    present = {split: [names[i] for i in sorted(set(found))] for split, found in by_split.items()}
    for split in ("test", "val"):
        if split in by_split:
            check_split_classes(f"data.{split}_path: {tables[split]}", present[split], present["train"])
    return by_split, names
