"""Text classification with a Hugging Face model: data, tokenization, fine-tuning, predict, export.
The model is a tiny random BERT saved to a temp dir (tests/conftest.py): nothing is downloaded."""

import json
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ftool.data import DataInfo, Splits
from ftool.data.classes import select_classes
from ftool.data.loaders import EpochSampler
from ftool.data.tables import read_rows
from ftool.data.text import PadBatch, TokenizedTexts, text_csv, text_files, tokenize
from ftool.errors import FtoolError
from ftool.inference import text_inputs
from ftool.registry import MODELS
from ftool.models.hf import load_tokenizer
from tests.conftest import assert_one_line_error, closed_port, ftool, read_json, read_jsonl, sentiment_sentences

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@pytest.fixture
def texts(tmp_path):
    """rt-polarity's layout: one file per class, one sentence per line."""
    pos, neg = sentiment_sentences(150)
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "reviews.pos").write_text("\n".join(pos) + "\n")
    (folder / "reviews.neg").write_text("\n".join(neg) + "\n\n")  # blank lines are skipped
    return folder


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FTOOL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _env(cache_dir):
    return {**OFFLINE, "FTOOL_CACHE_DIR": str(cache_dir)}


def test_text_files_class_names_come_from_the_file_suffixes(texts, tiny_bert, cache):
    # What a data folder holds beside its class files is not a class (MR's download has a README .txt).
    for name in ("rt-polaritydata.README.1.0.txt", "LICENSE", "notes.md", "reviews.tar.gz", ".DS_Store"):
        (texts / name).write_text("not a sentence of any class\n")
    splits = text_files(str(texts), load_tokenizer(str(tiny_bert)), max_length=8)
    assert splits.info.class_names == ["neg", "pos"] and splits.info.text
    assert len(splits.train) == 300 and splits.train.labels.tolist() == [0] * 150 + [1] * 150
    assert max(splits.train.lengths()) == 8  # cut to max_length, [CLS] and [SEP] included
    ids, label = splits.train[0]
    assert ids[0].item() == 2 and ids[-1].item() == 3 and label == 0  # [CLS] ... [SEP]
    (texts / "rt-polarity.neutral").write_text("\n \n")  # a class with nothing to learn from
    with pytest.raises(FtoolError, match=r"data.root: .*rt-polarity.neutral holds no text; each class file needs some"):
        text_files(str(texts), load_tokenizer(str(tiny_bert)), max_length=8)
    table = texts.parent / "reviews.csv"
    table.write_text("text,label\ngreat,pos\n")  # a table given as text_files' folder
    with pytest.raises(FtoolError, match=r"data.root: .*reviews.csv is a table; data=text_files reads a folder of text "
                                         r"files, data=text_csv a table: data=text_csv data.path=.*reviews.csv"):
        text_files(str(table), load_tokenizer(str(tiny_bert)))
    with pytest.raises(FtoolError, match=r"data.root: .*reviews.pos is a file; expected a folder of one text file"):
        text_files(str(texts / "reviews.pos"), load_tokenizer(str(tiny_bert)))


def test_text_files_reads_a_folder_per_class_one_text_per_file_as_imdbs_download(tmp_path, tiny_bert, cache):
    tokenizer = load_tokenizer(str(tiny_bert))
    imdb = tmp_path / "aclImdb"  # its layout: train/ and test/, a folder per class, a review per file
    for split, name, n in (("train", "pos", 3), ("train", "neg", 2), ("test", "pos", 2)):
        (imdb / split / name).mkdir(parents=True)
        for i in range(n):
            (imdb / split / name / f"{i}_9.txt").write_text(f"a {name} review,\nover two lines {i}\n")
    (imdb / "train" / "neg" / "empty.txt").write_text("  \n")  # skipped, as a blank line is
    (imdb / "train" / "neg" / ".DS_Store").write_text("not a review")
    (imdb / "train" / "urls_pos.txt").write_text("http://example.com\n")  # beside the class folders: no text
    (imdb / "README").write_text("the dataset's readme")
    splits = text_files(str(imdb), tokenizer, max_length=16)
    assert splits.info.class_names == ["neg", "pos"]
    assert splits.train.labels.tolist() == [0, 0, 1, 1, 1] and splits.val is None
    assert splits.test.labels.tolist() == [1, 1]  # the test folder holds pos only: labelled as train labels it
    whole = tokenizer("a pos review,\nover two lines 0", truncation=True, max_length=16)["input_ids"]
    assert splits.test[0][0].tolist() == whole  # the file's whole text is one sample

    plain = text_files(str(imdb / "train"), tokenizer, max_length=16)  # class folders without split folders
    assert plain.info.class_names == ["neg", "pos"] and len(plain.train) == 5 and plain.test is None
    (imdb / "train" / "unsup").mkdir()  # an empty class folder: a class the model could not learn
    with pytest.raises(FtoolError, match=r"data.root: .*train/unsup holds no text files matching '\*'; each class "
                                         r"folder needs some"):
        text_files(str(imdb), tokenizer, max_length=16)
    (imdb / "train" / "unsup").rmdir()
    (imdb / "test" / "unsup").mkdir()
    with pytest.raises(FtoolError, match=r"data.root: .*test has classes the train data has not: unsup "
                                         r"\(train: neg, pos\)"):
        text_files(str(imdb), tokenizer, max_length=16)


def test_a_max_length_beyond_the_models_positions_is_an_error_before_tokenizing(texts, tiny_bert, cache, tmp_path):
    tokenizer = load_tokenizer(str(tiny_bert))  # saved without a limit: its model's max_position_embeddings
    assert tokenizer.model_max_length == 128
    assert text_files(str(texts), tokenizer, max_length=128).info.input_shape == (128,)
    with pytest.raises(FtoolError, match=r"data.max_length: 129 is more tokens than the model takes \(128\); "
                                         r"give data.max_length=128 or less"):
        text_files(str(texts), tokenizer, max_length=129)  # (a long text would fail in training, mid-run)
    # a model of relative positions only (DeBERTa-v3's) takes longer texts than its max_position_embeddings
    from transformers import DebertaV2Config

    relative = tmp_path / "relative_positions"
    tokenizer.model_max_length = int(1e30)  # (saved as the tiny BERT's was: without a limit)
    tokenizer.save_pretrained(relative)
    DebertaV2Config(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                    max_position_embeddings=64, position_biased_input=False).save_pretrained(relative)
    assert load_tokenizer(str(relative)).model_max_length > 10**6


def test_how_many_texts_max_length_cuts_is_said(texts, tiny_bert, cache, capsys):
    tokenizer = load_tokenizer(str(tiny_bert))
    text_files(str(texts), tokenizer, max_length=128)  # every sentence fits
    assert "fill data.max_length" not in capsys.readouterr().out
    splits = text_files(str(texts), tokenizer, max_length=8)
    ids = [t for split in (splits.train, splits.val, splits.test) if split for t in split.ids]
    full = sum(len(t) == 8 for t in ids)
    assert 0 < full < len(ids) == 300
    assert capsys.readouterr().out == (f"data: {full} of 300 texts ({full / 300:.1%}) fill data.max_length=8 tokens, "
                                       f"where longer ones are cut\n")


def test_augmentation_on_text_is_an_error(texts, tiny_bert, cache):
    from ftool.config import AugmentConfig, DataConfig
    from ftool.data.loaders import build_loaders

    splits = text_files(str(texts), load_tokenizer(str(tiny_bert)), max_length=8)
    with pytest.raises(FtoolError, match="data.augment: augmentation needs image data; this data is text"):
        build_loaders(DataConfig(name="text_files", augment=AugmentConfig(hflip=True)), splits, seed=0)


def test_tokenized_texts_are_cached_and_reused(tiny_bert, cache):
    tokenizer = load_tokenizer(str(tiny_bert))
    first = tokenize(["a great film", "boring"], tokenizer, 16)
    assert len(list((cache / "tokens").glob("*.safetensors"))) == 1

    class Refuses:  # a cache hit must not tokenize again
        backend_tokenizer = tokenizer.backend_tokenizer

        def __call__(self, *args, **kwargs):
            raise AssertionError("tokenized again")

    again = tokenize(["a great film", "boring"], Refuses(), 16)
    assert [t.tolist() for t in again] == [t.tolist() for t in first]
    tokenize(["a great film", "boring"], tokenizer, 8)  # another max_length: another entry
    assert len(list((cache / "tokens").glob("*.safetensors"))) == 2


def test_many_texts_are_tokenized_in_chunks_with_progress_lines(tiny_bert, cache, monkeypatch, capsys):
    from ftool.data import text
    from ftool.engine import progress

    monkeypatch.setattr(text, "TOKENIZE_CHUNK", 2)
    monkeypatch.setattr(progress, "PLAIN_LINE_SECONDS", 0.0)
    texts = ["a great film", "boring", "witty and fun", "dull", "the plot is weak"]
    tokenizer = load_tokenizer(str(tiny_bert))
    assert [t.tolist() for t in tokenize(texts, tokenizer, 16)] == [t.tolist() for t in text.encode(texts, tokenizer, 16)]
    assert capsys.readouterr().out.splitlines()[-1].startswith("tokenize 5 texts 3/3 batches")


def test_a_damaged_or_unwritable_token_cache_costs_time_not_the_run(tiny_bert, cache, monkeypatch, capsys):
    tokenizer = load_tokenizer(str(tiny_bert))
    first = tokenize(["a great film", "boring"], tokenizer, 16)
    (entry,) = (cache / "tokens").glob("*.safetensors")
    entry.write_bytes(entry.read_bytes()[:20])  # cut short (a full disk, a copy that stopped)
    assert [t.tolist() for t in tokenize(["a great film", "boring"], tokenizer, 16)] == [t.tolist() for t in first]
    assert load_file(entry)["lengths"].tolist() == [len(t) for t in first]  # made again, whole

    monkeypatch.setenv("FTOOL_CACHE_DIR", str(entry))  # a file, not a folder: nothing can be written under it
    again = tokenize(["a great film", "boring"], tokenizer, 16)
    assert [t.tolist() for t in again] == [t.tolist() for t in first]
    assert "warning: tokenized texts not cached" in capsys.readouterr().err


def test_batches_are_padded_to_their_longest_text():
    inputs, labels = PadBatch(pad_id=0)([(torch.tensor([2, 7, 3]), 1), (torch.tensor([2, 3]), 0)])
    assert inputs["input_ids"].tolist() == [[2, 7, 3], [2, 3, 0]]
    assert inputs["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert labels.tolist() == [1, 0]


def test_length_grouping_keeps_every_sample_and_batches_similar_lengths():
    lengths = [(i * 37) % 100 + 1 for i in range(1000)]
    plain, grouped = EpochSampler(1000, seed=0), EpochSampler(1000, seed=0, lengths=lengths, batch_size=10)
    order = list(grouped)
    assert sorted(order) == list(range(1000)) and order == list(grouped)  # a permutation, reproducible

    def padding(indices):
        batches = [indices[i:i + 10] for i in range(0, 1000, 10)]
        return sum(max(lengths[j] for j in b) * 10 - sum(lengths[j] for j in b) for b in batches)

    assert padding(order) < padding(list(plain)) / 5


def test_a_class_subset_of_texts_keeps_their_lengths_for_grouping():
    ids = [torch.arange(n) for n in (3, 5, 2, 7, 4)]
    splits = Splits(TokenizedTexts(ids, torch.tensor([0, 1, 2, 1, 0])), DataInfo("classification", (8,), 3, ["a", "b", "c"]))
    subset = select_classes(splits, ["c", "a"]).train
    assert [int(y) for _, y in subset] == [1, 0, 1] and subset.lengths() == [3, 2, 4]


def test_text_csv_reads_labels_by_name_and_jsonl(tmp_path, tiny_bert, cache):
    table = tmp_path / "reviews.csv"
    table.write_text('review,sentiment\n"great, fun film",positive\nboring plot,negative\nwitty,positive\n')
    lines = tmp_path / "test.jsonl"
    lines.write_text('{"review": "awful", "sentiment": "negative"}\n')
    splits = text_csv(str(table), load_tokenizer(str(tiny_bert)), text_column="review",
                      label_column="sentiment", test_path=str(lines))
    assert splits.info.class_names == ["negative", "positive"]
    assert splits.train.labels.tolist() == [1, 0, 1] and splits.test.labels.tolist() == [0]
    lines.write_text('{"review": "so-so", "sentiment": "neutral"}\n')  # a class the model would never train on
    with pytest.raises(FtoolError, match=r"data.test_path: .*test.jsonl has classes the train data has not: neutral "
                                         r"\(train: negative, positive\)"):
        text_csv(str(table), load_tokenizer(str(tiny_bert)), "review", "sentiment", test_path=str(lines))
    with pytest.raises(FtoolError, match="no column 'text'; its columns: review, sentiment \\(data.text_column"):
        text_csv(str(table), load_tokenizer(str(tiny_bert)))
    lines.write_text('["awful", "negative"]\n')
    with pytest.raises(FtoolError, match="test.jsonl:1 is not a JSON object \\(a list\\)"):
        text_csv(str(table), load_tokenizer(str(tiny_bert)), "review", "sentiment", test_path=str(lines))
    lines.write_text('{"review": "awful", "sentiment": ["negative", "angry"]}\n')  # several labels: a class "[...]"
    with pytest.raises(FtoolError, match=r"test.jsonl:1: 'sentiment' is a list \(\['negative', 'angry'\]\); ftool reads "
                                         r"one value per column \(one class per row"):
        text_csv(str(table), load_tokenizer(str(tiny_bert)), "review", "sentiment", test_path=str(lines))


def test_json_tables_as_a_list_of_rows_and_one_object_refused(tmp_path):
    rows = [{"review": "awful", "sentiment": "negative"}, {"review": "witty", "sentiment": "positive"}]
    table = tmp_path / "reviews.json"
    table.write_text(json.dumps(rows, indent=2))  # json.dump of a list, pandas' to_json(orient="records")
    assert read_rows(table, "data") == rows
    table.write_text(json.dumps([rows[0], ["witty", "positive"]]))
    with pytest.raises(FtoolError, match=r"data: .*reviews.json row 2 is not a JSON object \(a list\)"):
        read_rows(table, "data")
    # {"data": rows}, pandas' default to_json (a dict of columns), one row pretty-printed: no rows to read
    for whole, indent in (({"data": rows}, None), ({"review": {"0": "awful"}, "sentiment": {"0": "negative"}}, None),
                          (rows[0], 2)):
        table.write_text(json.dumps(whole, indent=indent))
        with pytest.raises(FtoolError, match=r"reviews.json is one JSON object; ftool reads rows: one JSON object per "
                                             r"line \(JSON lines\) or a list of them"):
            read_rows(table, "data")
    table.write_text(json.dumps({"review": "fine", "sentiment": ["negative"] * 200}))  # a row's long list, shown short
    with pytest.raises(FtoolError, match=r"'sentiment' is a list \(\['negative', 'negative', [^)]+\.\.\.\); ftool reads") as e:
        read_rows(table, "data")
    assert len(str(e.value)) < len(str(table)) + 200  # (it held the whole list)


def test_a_csv_with_a_long_document_reads_and_one_with_an_unclosed_quote_says_where(tmp_path):
    table = tmp_path / "documents.csv"  # a value longer than csv's default limit (128 KiB): a traceback before
    document = "a long contract . " * 10000
    table.write_text(f'text,label\n"{document}",legal\n"a line\nand another",other\n')
    assert read_rows(table, "data") == [{"text": document.strip(), "label": "legal"},
                                        {"text": "a line\nand another", "label": "other"}]  # (quoted lines are one value)
    table.write_text('text,label\nfine,pos\n"opened and never closed,pos\nthe rest,neg\nof the file,pos\n')
    with pytest.raises(FtoolError, match=r"documents.csv line 3: a quote opened there is never closed, so its value "
                                         r"takes the rest of the file"):  # (was: "row 2 has no label")
        read_rows(table, "data")
    table.write_text('text,label\n"two\nlines"\nok,neg')  # closed, and short of a label: not a quote left open
    assert read_rows(table, "data") == [{"text": "two\nlines", "label": None}, {"text": "ok", "label": "neg"}]


def test_parquet_tables_are_read_as_the_hub_and_pandas_save_them(tmp_path):
    import pyarrow
    import pyarrow.parquet

    table = tmp_path / "train-00000-of-00001.parquet"  # (the hub's name; pandas saves a non-default index as a column)
    rows = [{"text": "a gorgeous film", "label": 1, "__index_level_0__": 7}, {"text": "dull", "label": 0, "__index_level_0__": 3}]
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), table)
    assert read_rows(table, "data") == [{"text": "a gorgeous film", "label": 1}, {"text": "dull", "label": 0}]
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist([{"text": "fine", "label": ["pos", "neg"]}]), table)
    with pytest.raises(FtoolError, match=r"parquet row 1: 'label' is a list \(\['pos', 'neg'\]\); ftool reads one value"):
        read_rows(table, "data")
    table.write_text("text,label\n")  # a CSV under a Parquet name
    with pytest.raises(FtoolError, match=r"data: .*parquet is not a Parquet file \("):
        read_rows(table, "data")


def test_space_around_a_tables_names_and_values_is_not_part_of_them(tmp_path):
    table = tmp_path / "typed.csv"  # as people type a CSV: a space after each comma, a label with one after it
    table.write_text('text, label\n"a great, fun film", pos\nboring plot,neg \n')
    assert read_rows(table, "data") == [{"text": "a great, fun film", "label": "pos"},  # (not '"a great' and ' fun film"')
                                        {"text": "boring plot", "label": "neg"}]  # (not a class 'neg ')
    lines = tmp_path / "typed.jsonl"
    lines.write_text('{"text ": "awful", "label": "neg "}\n')
    assert read_rows(lines, "data") == [{"text": "awful", "label": "neg"}]


@pytest.mark.parametrize("labels, names, indices", [
    (["0", "2", "1", "0"], ["0", "1", "2"], [0, 2, 1, 0]),  # 0..k-1: their own index
    (["5", "1", "10", "1"], ["1", "5", "10"], [1, 0, 2, 0]),  # star ratings: no empty class 0, numeric order
    (["-1", "+1", "1"], ["-1", "1"], [0, 1, 1]),  # -1/+1
    (["1.0", "10.0", "2.0", "1"], ["1", "2", "10"], [0, 2, 1, 0]),  # as pandas writes them: not names ("10.0" < "2.0")
    (["b", "a", "10"], ["10", "a", "b"], [2, 1, 0]),  # names
])
def test_text_csv_labels_are_classes_in_order(labels, names, indices, tmp_path, tiny_bert, cache):
    table = tmp_path / "reviews.csv"
    table.write_text("text,label\n" + "".join(f"film {i},{label}\n" for i, label in enumerate(labels)))
    splits = text_csv(str(table), load_tokenizer(str(tiny_bert)), test_path=str(table))
    assert splits.info.class_names == names and splits.info.num_outputs == len(names)
    assert splits.test.labels.tolist() == indices


def test_text_csv_as_spreadsheets_write_it(tmp_path, tiny_bert, cache):
    tokenizer = load_tokenizer(str(tiny_bert))
    table = tmp_path / "excel.csv"  # Excel's "CSV UTF-8" starts with a byte-order mark
    table.write_text("review,sentiment\ngreat fun,positive\n,negative\n  ,negative\ndull,negative\n",
                     encoding="utf-8-sig")
    splits = text_csv(str(table), tokenizer, text_column="review", label_column="sentiment", test_path=str(table))
    assert splits.test.labels.tolist() == [1, 0]  # the rows without a text are left out
    table.write_text("review,sentiment\ngreat fun,positive\ndull,\n")
    with pytest.raises(FtoolError, match="excel.csv row 2 has no label \\(its 'sentiment' is empty\\)"):
        text_csv(str(table), tokenizer, text_column="review", label_column="sentiment")
    table.write_bytes("review,sentiment\ntrès bien,positive\n".encode("latin-1"))
    with pytest.raises(FtoolError, match="data: .*excel.csv is not UTF-8 text"):
        text_csv(str(table), tokenizer, text_column="review", label_column="sentiment")


def test_binary_metrics_are_those_of_the_positive_class():
    from sklearn.metrics import f1_score, precision_score, recall_score

    from ftool.metrics import EpochMeter

    targets = torch.tensor([1, 1, 1, 0, 0, 0, 1, 0])
    predicted = torch.tensor([1, 0, 1, 1, 0, 0, 1, 1])
    logits = torch.nn.functional.one_hot(predicted, 2).float()
    meter = EpochMeter(DataInfo("classification", (8,), 2, ["neg", "pos"], text=True), torch.device("cpu"))
    meter.update(torch.tensor(0.5), logits, targets)
    got = meter.compute("test")
    assert got["test/precision"] == pytest.approx(precision_score(targets, predicted))  # 3/5, not the macro 0.6
    assert got["test/recall"] == pytest.approx(recall_score(targets, predicted))
    assert got["test/f1"] == pytest.approx(f1_score(targets, predicted))
    assert got["test/accuracy"] == pytest.approx(5 / 8)


def test_finetune_predict_eval_and_export_a_text_model(tmp_path, texts, tiny_bert, cache):
    run = tmp_path / "run"
    result = ftool("finetune", "model=hf_classifier", f"model.name_or_path={tiny_bert}", "data=text_files",
                   f"data.root={texts}", "data.max_length=16", "data.group_by_length=true", "data.batch_size=16",
                   "optimizer.lr=0.003", "trainer.epochs=4", "trainer.progress=false", f"hydra.run.dir={run}",
                   cwd=tmp_path, env=_env(cache))
    assert result.returncode == 0, result.stderr
    summary = read_json(run / "summary.json")
    assert summary["data"]["class_names"] == ["neg", "pos"] and summary["finetune"]["from"] == "hf_classifier"
    assert summary["metrics"]["test/accuracy"] >= 0.9
    assert {"test/precision", "test/recall", "test/f1"} <= set(summary["metrics"])
    lrs = [r["lr"] for r in read_jsonl(run / "metrics.jsonl") if "lr" in r]
    assert max(lrs) <= 0.003 and lrs[-1] < lrs[len(lrs) // 2] < max(lrs)  # warmup, then linear decay

    result = ftool("predict", f"ckpt={run}", "input=a gorgeous witty film", "input=the plot is dull clichés",
                   "output=json", cwd=tmp_path, env=_env(cache))
    assert result.returncode == 0, result.stderr
    predictions = json.loads(result.stdout)
    assert [p["label"] for p in predictions] == ["pos", "neg"]
    assert predictions[0]["input"] == "a gorgeous witty film"
    assert sum(predictions[0]["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    long = "a gorgeous witty film " * 8  # 32 words: the model reads its first 16 tokens, and the user is told
    result = ftool("predict", f"ckpt={run}", f"input={long}", "input=a gorgeous witty film", "output=json",
                   cwd=tmp_path, env=_env(cache))
    assert len(json.loads(result.stdout)) == 2 and result.stderr == (  # (stdout: JSON still)
        "warning: 1 of 2 texts (50.0%) fill data.max_length=16 tokens, where longer ones are cut: the model reads "
        "no further, as in training\n")
    file = tmp_path / "new.txt"
    file.write_text("superb and moving\n\nawful , tedious movie\n")
    table = ftool("predict", f"ckpt={run}", f"input={file}", cwd=tmp_path, env=_env(cache))
    assert table.returncode == 0 and "superb and moving" in table.stdout and "p(pos)" in table.stdout
    piped = ftool("predict", f"ckpt={run}", "input=-", "output=json", cwd=tmp_path, env=_env(cache),
                  stdin="a gorgeous witty film\n\nthe plot is dull clichés\n")  # cat texts | ftool predict input=-
    assert piped.returncode == 0 and json.loads(piped.stdout) == predictions
    table_file = tmp_path / "new.csv"  # a table's column of texts, not its lines (a header, the labels)
    table_file.write_text("review,stars\na gorgeous witty film,5\n\"the plot is dull clichés\",1\n")
    tabled = ftool("predict", f"ckpt={run}", f"input={table_file}", "text_column=review", "output=json",
                   cwd=tmp_path, env=_env(cache))
    assert tabled.returncode == 0 and json.loads(tabled.stdout) == predictions, tabled.stderr
    assert_one_line_error(ftool("predict", f"ckpt={run}", "input=-", cwd=tmp_path, env=_env(cache)),
                          "input: -: nothing to predict")

    result = ftool("eval", f"ckpt={run}", cwd=tmp_path, env=_env(cache))
    assert result.returncode == 0, result.stderr
    assert read_json(run / "eval.json")["metrics"]["test/accuracy"] == summary["metrics"]["test/accuracy"]

    for fmt in ("safetensors", "torchscript", "pt2", "onnx"):
        result = ftool("export", f"ckpt={run}", f"format={fmt}", cwd=tmp_path, env=_env(cache))
        assert result.returncode == 0, result.stderr
        assert "max |difference|" in result.stdout
    _check_exports_match(run, predictions)
    hf = run / "export" / "hf"  # safetensors writes its files 0600: readable by other users as config.json is
    assert (hf / "model.safetensors").stat().st_mode & 0o777 == (hf / "config.json").stat().st_mode & 0o777
    (hf / "stale.bin").write_bytes(b"from an export before")  # a folder export replaces the previous one whole
    assert ftool("export", f"ckpt={run}", f"out={hf}", cwd=tmp_path, env=_env(cache)).returncode == 0
    assert sorted(p.name for p in hf.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json",
                                                    "tokenizer_config.json"]
    assert [p.name for p in hf.parent.iterdir() if p.name.startswith(".")] == []  # no temporary folder left
    assert_one_line_error(ftool("export", f"ckpt={run}", f"out={tmp_path}", cwd=tmp_path, env=_env(cache)),
                          f"out: {tmp_path} holds other files, and this export is a folder of its own (Hugging Face's "
                          f"save_pretrained) that replaces it: give a new folder, out={tmp_path / 'hf'}")


def given_texts(value, column):
    return [text for _, text in text_inputs(value, column)]


def test_predict_inputs_are_texts_or_text_files_and_a_missing_file_is_an_error(tmp_path):
    (tmp_path / "reviews.txt").write_text("superb and moving\n\nflat and dull\n")
    assert given_texts(str(tmp_path / "reviews.txt"), "text") == ["superb and moving", "flat and dull"]
    assert given_texts("great!", "text") == ["great!"]
    review = "a long and winding film about memory, " * 8  # longer than a file name may be (255 bytes)
    assert given_texts(review, "text") == [review]
    assert given_texts("a film to watch, not a .txt", "text") == ["a film to watch, not a .txt"]
    with pytest.raises(FtoolError, match="input: revews.txt does not exist"):  # not labelled as a text
        given_texts("revews.txt", "text")
    for blank in ("", "  "):  # input= with nothing after it: not a text to label
        with pytest.raises(FtoolError, match="input: an empty text"):
            given_texts(blank, "text")
    (tmp_path / "latin.txt").write_bytes("un film très beau\n".encode("latin-1"))
    with pytest.raises(FtoolError, match=r"input: .*latin.txt is not UTF-8 text \(invalid continuation byte at "
                                         r"byte 10\); save it as UTF-8$"):  # (which Western encoding: no guess)
        given_texts(str(tmp_path / "latin.txt"), "text")
    # Chinese, Japanese, Korean as Notepad saves them on a Windows in that language: the encoding, and its iconv
    for name, encoding, text in (("gbk", "GB18030", "这部电影太好看了\n剧情无聊透顶\n"),
                                 ("sjis", "CP932", "この映画はとても面白かった\nつまらない\n"),
                                 ("big5", "BIG5", "這部電影太好看了\n劇情無聊透頂\n"),
                                 ("kr", "CP949", "이 영화 정말 재미있어요\n지루해요\n")):
        file = tmp_path / f"{name} reviews.txt"
        file.write_bytes(text.encode(encoding))
        with pytest.raises(FtoolError) as raised:
            given_texts(str(file), "text")
        copy = tmp_path / f"{name} reviews-utf8.txt"
        command = f"iconv -f {encoding} -t UTF-8 '{file}' > '{copy}'"
        assert str(raised.value).endswith(f"; it reads as {encoding}: {command} makes a UTF-8 copy")
        if shutil.which("iconv"):  # the command given makes the text as it was written
            assert subprocess.run(command, shell=True).returncode == 0 and copy.read_text() == text
    damaged = tmp_path / "damaged.txt"  # UTF-8 but for one byte: no encoding to convert from
    damaged.write_bytes("这部电影太好看了\n".encode() * 500 + b"\xe9\xa1 \n")
    with pytest.raises(FtoolError, match=r"is not UTF-8 text \(invalid continuation byte at byte 12500\); save it as "
                                         r"UTF-8$"):
        given_texts(str(damaged), "text")
    from PIL import Image  # photos given to a text model: "not UTF-8 text ...; save it as UTF-8" misled

    (tmp_path / "photos").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "photos" / "cat.png")
    for given in (tmp_path / "photos", tmp_path / "photos" / "cat.png"):
        with pytest.raises(FtoolError, match=r"input: .*cat.png is an image, and this reads text \(a text file"):
            given_texts(str(given), "text")


def test_predict_expands_file_patterns_and_leaves_texts_alone(tmp_path, monkeypatch):
    from ftool.inference import expand_patterns

    monkeypatch.chdir(tmp_path)
    for name in ("b.txt", "a.txt", "sub/c.txt", "d.png"):
        Path(name).parent.mkdir(exist_ok=True)
        Path(name).write_text("a text\n")
    texts = ("*.txt", "**/*.txt", "is it good?", "what*", "[sic]", "so * so")  # patterns look like paths
    assert expand_patterns(texts, image=False) == ["a.txt", "b.txt", "a.txt", "b.txt", "sub/c.txt", *texts[2:]]
    assert expand_patterns(("*.png", "d.png"), image=True) == ["d.png", "d.png"]
    with pytest.raises(FtoolError, match=r"input: 'photos/\*\.jpg' matches no file"):
        expand_patterns(("photos/*.jpg",), image=True)


def test_predict_reads_a_folder_as_a_text_per_file_shown_by_its_path(tmp_path):
    reviews = tmp_path / "reviews"  # as data=text_files reads a class folder (IMDB's aclImdb/test/pos)
    (reviews / "more").mkdir(parents=True)
    (reviews / "1_9.txt").write_text("superb,\nmoving\n")
    (reviews / "more" / "2_1.txt").write_text("flat and dull")
    (reviews / "3_5.txt").write_text("\n")  # empty: no text
    (reviews / ".DS_Store").write_text("macOS metadata")
    assert text_inputs(str(reviews), "text") == [(str(reviews / "1_9.txt"), "superb,\nmoving"),
                                                  (str(reviews / "more" / "2_1.txt"), "flat and dull")]


def test_predict_reads_a_tables_column_of_texts(tmp_path):
    tables = {"a.csv": 'text,label\n"superb, moving",pos\n,neg\nflat and dull,neg\n',
              "a.tsv": "label\ttext\npos\tsuperb, moving\nneg\t\nneg\tflat and dull\n",
              "a.JSONL": '{"text": "superb, moving", "label": 1}\n{"text": ""}\n\n{"text": "flat and dull"}\n'}
    for name, content in tables.items():  # the header and the labels are no texts; empty texts are skipped
        (tmp_path / name).write_text(content)
        assert given_texts(str(tmp_path / name), "text") == ["superb, moving", "flat and dull"]
    quoted = tmp_path / "quoted.tsv"  # a quote that opens a sentence must not swallow the rows after it
    quoted.write_text('text\tlabel\n"superb\tpos\nit is "flat"\tneg\n')
    assert given_texts(str(quoted), "text") == ['"superb', 'it is "flat"']
    with pytest.raises(FtoolError, match=r"input: .*a.csv row 1 has no column 'review'; its columns: text, label "
                                         r"\(text_column=<name> names the column of texts; a file of one text per line "
                                         r"without a header is read as lines when named .txt\)"):
        given_texts(str(tmp_path / "a.csv"), "review")


def _check_exports_match(run, predictions):
    """Each exported model, loaded without ftool, gives the probabilities `predict` gave."""
    import onnxruntime
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = run / "export" / "hf"
    hf = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert hf.config.id2label == {0: "neg", 1: "pos"}
    batch = AutoTokenizer.from_pretrained(folder)([p["input"] for p in predictions], padding=True, return_tensors="pt")
    expected = torch.tensor([[p["probabilities"]["neg"], p["probabilities"]["pos"]] for p in predictions])
    with torch.no_grad():
        assert torch.allclose(hf(**batch).logits.softmax(-1), expected, atol=1e-5)
        traced = torch.jit.load(str(run / "export" / "model.pt"))
        assert torch.allclose(traced(batch["input_ids"], batch["attention_mask"]).softmax(-1), expected, atol=1e-5)
        program = torch.export.load(str(run / "export" / "model.pt2")).module()  # another batch size and length
        assert torch.allclose(program(batch["input_ids"], batch["attention_mask"]).softmax(-1), expected, atol=1e-5)
    session = onnxruntime.InferenceSession(str(run / "export" / "model.onnx"))
    logits = session.run(None, {"input_ids": batch["input_ids"].numpy(), "attention_mask": batch["attention_mask"].numpy()})[0]
    assert torch.allclose(torch.from_numpy(logits).softmax(-1), expected, atol=1e-5)


def test_lora_trains_adapters_only_exports_merged_and_carries_over_to_finetune_from(tmp_path, texts, tiny_bert, cache):
    run = tmp_path / "lora"
    result = ftool("finetune", "model=hf_classifier", f"model.name_or_path={tiny_bert}", "data=text_files",
                   f"data.root={texts}", "data.max_length=16", "finetune.lora.r=4", "optimizer.lr=0.01",
                   "trainer.epochs=3", "trainer.progress=false", f"hydra.run.dir={run}", cwd=tmp_path, env=_env(cache))
    assert result.returncode == 0, result.stderr
    assert "warning:" not in result.stderr  # (lr 0.01: no LoRA LR warning)
    summary = read_json(run / "summary.json")
    assert summary["finetune"]["lora_r"] == 4
    assert summary["finetune"]["trainable_parameters"] < summary["parameters"] / 5
    base = load_file(tiny_bert / "model.safetensors")
    tuned = load_file(run / "checkpoints" / "best.safetensors")
    query = "bert.encoder.layer.0.attention.self.query"
    assert torch.equal(tuned[f"hf.base_model.model.{query}.base_layer.weight"], base[f"{query}.weight"])  # frozen
    assert tuned[f"hf.base_model.model.{query}.lora_B.default.weight"].abs().sum() > 0  # trained (starts at 0)
    result = ftool("export", f"ckpt={run}", cwd=tmp_path, env=_env(cache))
    assert result.returncode == 0, result.stderr
    merged = load_file(run / "export" / "hf" / "model.safetensors")
    assert not any("lora" in name for name in merged)  # merged: plain transformer
    assert not torch.equal(merged[f"{query}.weight"], base[f"{query}.weight"])

    # finetune.from a LoRA run starts from its merged weights; LoRA from a plain run wraps that run's weights.
    plain = tmp_path / "from_lora"
    result = ftool("finetune", f"finetune.from={run}", "model=hf_classifier", f"model.name_or_path={tiny_bert}",
                   "data=text_files", f"data.root={texts}", "data.max_length=16", "finetune.freeze=backbone",
                   "trainer.max_steps=1", "trainer.progress=false", f"hydra.run.dir={plain}", cwd=tmp_path, env=_env(cache))
    assert result.returncode == 0, result.stderr
    assert torch.equal(load_file(plain / "checkpoints" / "last.safetensors")[f"hf.{query}.weight"], merged[f"{query}.weight"])
    assert read_json(plain / "summary.json")["finetune"]["pretrained_parameters"] == sum(
        t.numel() for name, t in base.items() if not name.startswith("classifier."))  # elements, as `parameters`
    adapted = tmp_path / "lora_from_plain"
    result = ftool("finetune", f"finetune.from={plain}", "model=hf_classifier", f"model.name_or_path={tiny_bert}",
                   "data=text_files", f"data.root={texts}", "data.max_length=16", "finetune.lora.r=4",
                   "trainer.max_steps=1", "trainer.progress=false", f"hydra.run.dir={adapted}", cwd=tmp_path, env=_env(cache))
    assert result.returncode == 0, result.stderr
    assert "warning: optimizer.lr=2e-05 is a full fine-tune's LR: LoRA adapters start at zero" in result.stderr
    assert torch.equal(load_file(adapted / "checkpoints" / "last.safetensors")[f"hf.base_model.model.{query}.base_layer.weight"],
                       merged[f"{query}.weight"])

    # pooling=mean: the head is ftool's, so the export is a weights file, checked in a plain model.
    mean = tmp_path / "lora_mean"
    result = ftool("finetune", "model=hf_classifier", f"model.name_or_path={tiny_bert}", "model.pooling=mean",
                   "data=text_files", f"data.root={texts}", "data.max_length=16", "finetune.lora.r=4",
                   "trainer.max_steps=2", "trainer.validate=false", "trainer.progress=false", f"hydra.run.dir={mean}",
                   cwd=tmp_path, env=_env(cache))
    assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr  # (peft's FutureWarning)
    result = ftool("export", f"ckpt={mean}", cwd=tmp_path, env=_env(cache))
    assert result.returncode == 0, result.stderr
    assert not any("lora" in name for name in load_file(mean / "export" / "model.safetensors"))
    assert_one_line_error(ftool("finetune", "model=hf_classifier", f"model.name_or_path={tiny_bert}", "data=text_files",
                                f"data.root={texts}", "finetune.lora.r=4", "finetune.freeze=backbone", cwd=tmp_path,
                                env=_env(cache)), "finetune.freeze: must be none with LoRA")
    assert_one_line_error(ftool("finetune", "model=hf_classifier", f"model.name_or_path={tiny_bert}", "data=text_files",
                                f"data.root={texts}", "finetune.lora.r=4", "finetune.backbone_lr_mult=0.1",
                                cwd=tmp_path, env=_env(cache)), "finetune.backbone_lr_mult: must be 1 with LoRA")


def test_a_model_without_a_padding_token_pads_with_its_end_token(tmp_path):
    # GPT-2's family has no padding token: its own head, which looks for each text's last token by the
    # padding id, stopped at "Cannot handle batch sizes > 1 if no padding token is defined".
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast

    from ftool.data.text import PadBatch, encode
    from ftool.models.hf import hf_classifier, load_tokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["a gorgeous witty film", "the plot is dull"] * 5, vocab_size=300,
                            special_tokens=["<|endoftext|>"])
    bpe.save(str(tmp_path / "bpe.json"))
    end = "<|endoftext|>"
    PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "bpe.json"), eos_token=end, bos_token=end,
                            unk_token=end).save_pretrained(tmp_path / "gpt")
    end_id = bpe.token_to_id(end)
    GPT2ForSequenceClassification(GPT2Config(vocab_size=bpe.get_vocab_size(), n_embd=32, n_layer=1, n_head=2,
                                             n_positions=64, eos_token_id=end_id, bos_token_id=end_id)
                                  ).save_pretrained(tmp_path / "gpt")
    tokenizer, model = load_tokenizer(str(tmp_path / "gpt")), hf_classifier(2, name_or_path=str(tmp_path / "gpt")).eval()
    assert tokenizer.pad_token_id == model.hf.config.pad_token_id == end_id
    ids = encode(["a gorgeous witty film", "dull"], tokenizer, 16)
    batch, _ = PadBatch(tokenizer.pad_token_id)([(t, 0) for t in ids])
    with torch.no_grad():  # each text's logits as if alone: the head reads its last token, not the padding
        together = model(batch)
        alone = torch.cat([model(PadBatch(tokenizer.pad_token_id)([(t, 0)])[0]) for t in ids])
    assert torch.allclose(together, alone, atol=1e-5)
    # model.dropout sets GPT-2's own dropout settings (it set BERT's names only: ignored here, without a word)
    config = hf_classifier(2, name_or_path=str(tmp_path / "gpt"), dropout=0.3).hf.config
    assert (config.resid_pdrop, config.embd_pdrop, config.summary_first_dropout) == (0.3, 0.3, 0.3)


def test_a_model_folder_without_its_tokenizer_is_an_error(tiny_bert, tmp_path):
    # transformers made a tokenizer of five special tokens: every word [UNK], a model that learns nothing
    from transformers import AutoModelForSequenceClassification

    from ftool.models.hf import load_tokenizer

    AutoModelForSequenceClassification.from_pretrained(tiny_bert).save_pretrained(tmp_path / "model")
    with pytest.raises(FtoolError, match=r"model.name_or_path: .*model holds no tokenizer \(tokenizer.json, "
                                         r"tokenizer_config.json, vocab.txt, ...\); save the model's tokenizer beside"):
        load_tokenizer(str(tmp_path / "model"))
    # The folder above a model's (an export's, <run>/export, holding hf/): it said "holds no tokenizer"
    with pytest.raises(FtoolError, match=f"^model.name_or_path: {tmp_path} holds no Hugging Face model "
                                         f"\\(config.json\\); {tmp_path / 'model'} does$"):
        load_tokenizer(str(tmp_path))


def test_lora_on_a_model_peft_has_no_default_for_names_its_layers(tiny_bert, tmp_path):
    # DistilBERT's attention is q_lin/v_lin: peft's own words ("Please specify `target_modules`") named none
    from transformers import BertTokenizerFast, DistilBertConfig, DistilBertForSequenceClassification

    from ftool.config import LoraConfig
    from ftool.finetune import apply_lora
    from ftool.models.hf import hf_classifier

    config = DistilBertConfig(vocab_size=BertTokenizerFast.from_pretrained(tiny_bert).vocab_size, dim=32, n_layers=1,
                              n_heads=2, hidden_dim=64)
    DistilBertForSequenceClassification(config).save_pretrained(tmp_path / "distil")
    with pytest.raises(FtoolError, match=r"^finetune.lora.target_modules: peft has no default for this model "
                                         r"\(distilbert\); name the layers to adapt, usually the attention's query and "
                                         r"value, among its linear layers: k_lin, lin1, lin2, out_lin, pre_classifier, "
                                         r"q_lin, v_lin$"):
        apply_lora(hf_classifier(2, name_or_path=str(tmp_path / "distil")), LoraConfig(r=4))
    with pytest.raises(FtoolError, match=r"^finetune.lora.target_modules: query: no such layer in this model "
                                         r"\(distilbert\); its linear layers: k_lin, lin1, lin2, out_lin, "):
        apply_lora(hf_classifier(2, name_or_path=str(tmp_path / "distil")),  # (BERT's name: peft adapted v_lin alone,
                   LoraConfig(r=4, target_modules=["query", "v_lin"]))       #  without a word)
    model = apply_lora(hf_classifier(2, name_or_path=str(tmp_path / "distil")),
                       LoraConfig(r=4, target_modules=["q_lin", "attention.v_lin"]))
    assert any("lora_A" in name for name, _ in model.named_parameters())


def test_layer_lr_decay_lowers_the_lr_layer_by_layer(tiny_bert):
    from ftool.config import FinetuneConfig
    from ftool.finetune import lr_multipliers
    from ftool.models.hf import hf_classifier

    model = hf_classifier(2, name_or_path=str(tiny_bert))
    assert "hf.classifier.weight" not in model.pretrained_parameters
    assert "hf.bert.encoder.layer.1.output.dense.weight" in model.pretrained_parameters
    mult = lr_multipliers(model, model.pretrained_parameters, FinetuneConfig(layer_lr_decay=0.5, backbone_lr_mult=0.8))
    assert mult["hf.classifier.weight"] == 1.0  # fresh head: no backbone multiplier, top depth
    assert mult["hf.bert.pooler.dense.weight"] == pytest.approx(0.8)
    assert mult["hf.bert.encoder.layer.1.attention.self.query.weight"] == pytest.approx(0.8 * 0.5)
    assert mult["hf.bert.encoder.layer.0.attention.self.query.weight"] == pytest.approx(0.8 * 0.25)
    assert mult["hf.bert.embeddings.word_embeddings.weight"] == pytest.approx(0.8 * 0.125)
    # GPT-2 names its embeddings wte and wpe: they trained at the head's full LR
    from transformers import GPT2Config, GPT2ForSequenceClassification

    gpt = GPT2ForSequenceClassification(GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=32))
    mult = lr_multipliers(gpt, set(), FinetuneConfig(layer_lr_decay=0.5))
    assert mult["transformer.wte.weight"] == mult["transformer.wpe.weight"] == pytest.approx(0.125)
    assert mult["transformer.h.0.attn.c_attn.weight"] == pytest.approx(0.25) and mult["score.weight"] == 1.0


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_every_parameter_that_trains_gets_a_gradient_as_ddp_requires(tiny_bert, pooling):
    from ftool.models.hf import hf_classifier

    model = hf_classifier(2, name_or_path=str(tiny_bert), pooling=pooling)
    ids = torch.tensor([[2, 5, 6, 3], [2, 7, 3, 0]])
    model({"input_ids": ids, "attention_mask": (ids > 0).long()}).sum().backward()
    without = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert without == []  # (mean pooling leaves BERT's pooler unused: it is frozen)


def test_a_model_saved_with_a_head_for_other_classes_gets_one_for_this_datas(tiny_bert):
    # The tiny BERT is saved with a 2-class head (as a model fine-tuned on SST-2 would be); for 3 classes
    # transformers refused its size ("ignore_mismatched_sizes"), a traceback.
    from ftool.models.hf import hf_classifier

    model = hf_classifier(3, name_or_path=str(tiny_bert))
    assert model.hf.classifier.out_features == 3
    assert {n for n, _ in model.named_parameters()} - model.pretrained_parameters == {"hf.classifier.weight",
                                                                                     "hf.classifier.bias"}


@pytest.mark.parametrize("scheme", ["kaiming", "xavier"])
def test_weight_init_starts_the_new_head_and_leaves_the_pretrained_layers_as_loaded(tiny_bert, scheme):
    from ftool.models import apply_init
    from ftool.models.hf import hf_classifier

    model = hf_classifier(2, name_or_path=str(tiny_bert))
    loaded = {n: p.clone() for n, p in model.named_parameters()}
    apply_init(model, scheme)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, loaded[n])}
    assert changed == set(loaded) - model.pretrained_parameters == {"hf.classifier.weight", "hf.classifier.bias"}


@pytest.fixture
def hub_out_of_reach(tmp_path, cache):
    """A machine without internet, as users have it: offline mode not set, the hub refuses connections."""
    return {**_env(cache), "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf"),
            "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}


def test_a_hub_out_of_reach_gives_one_line_at_once_not_retries(tmp_path, texts, tiny_bert, hub_out_of_reach):
    # huggingface_hub alone retries each missing file for ~25 s, logging every try
    data = ftool("train", "model=hf_classifier", f"model.name_or_path={tiny_bert}", "data=imdb",
                 cwd=tmp_path, env=hub_out_of_reach)
    assert_one_line_error(data, "data=imdb: cannot load stanfordnlp/imdb",
                          "not in the cache and the hub is out of reach")
    model = ftool("train", "model=hf_classifier", "model.name_or_path=no-such-org/no-such-model",
                  "data=text_files", f"data.root={texts}", cwd=tmp_path, env=hub_out_of_reach)
    assert_one_line_error(model, "model.name_or_path: cannot load", "no-such-org/no-such-model")
    for result in (data, model):
        assert "Retrying" not in result.stdout + result.stderr


def test_a_hub_model_in_the_cache_trains_with_the_hub_out_of_reach(tmp_path, texts, tiny_bert, hub_out_of_reach):
    snapshot = tmp_path / "hf" / "hub" / "models--ftool-test--tiny-bert" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_bert, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    result = ftool("train", "model=hf_classifier", "model.name_or_path=ftool-test/tiny-bert", "data=text_files",
                   f"data.root={texts}", "trainer.epochs=1", "hydra.run.dir=run", cwd=tmp_path, env=hub_out_of_reach)
    assert result.returncode == 0, result.stderr
    assert read_json(tmp_path / "run" / "summary.json")["status"] == "completed"


def test_the_hub_counts_as_reachable_when_it_answers_at_all(monkeypatch):
    from http.server import HTTPServer, SimpleHTTPRequestHandler

    from ftool.hub import _reachable

    # huggingface_hub's client refuses every request in offline mode, whatever the shell set
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    server = HTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)  # answers HEAD / with a listing
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert _reachable(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
    assert not _reachable(f"http://127.0.0.1:{closed_port()}")


def test_a_missing_weights_package_and_a_text_set_without_tokenizer_are_explained(texts):
    from ftool.models.hf import resolve

    with pytest.raises(FtoolError, match="package 'no_such_package' is not installed"):
        resolve("pkg://no_such_package/model")
    for path in ("/no/such/model", "./my-bert", "models/bert/v2"):  # a mistyped folder, not a hub id to look up
        with pytest.raises(FtoolError, match=f"model.name_or_path: .*{path.lstrip('.')} is not a folder"):
            resolve(path)
    with pytest.raises(FtoolError, match="use a text model \\(model=hf_classifier\\)"):
        text_files(str(texts), tokenizer=None)
    with pytest.raises(FtoolError, match=r"^model.dropout: must be in \[0, 1\), got 2.0$"):  # not "cannot load"
        MODELS.build("hf_classifier", {"name_or_path": "/no/such/model", "dropout": 2.0}, num_outputs=2)


def test_a_text_model_on_image_data_is_one_line(tmp_path, tiny_bert, cache):
    result = ftool("train", "model=hf_classifier", f"model.name_or_path={tiny_bert}", f"hydra.run.dir={tmp_path / 'run'}",
                   cwd=tmp_path, env=_env(cache))
    assert_one_line_error(result, "model=hf_classifier: takes text, and data=digits gives tensors of shape [1, 8, 8]")
    assert read_json(tmp_path / "run" / "summary.json")["status"] == "failed"


@pytest.mark.parametrize("lora", [False, True])
def test_gradient_checkpointing_gives_the_same_gradients_and_keeps_fewer_activations(tiny_bert, lora):
    """model.gradient_checkpointing=true (Hugging Face's Trainer's gradient_checkpointing): the same step,
    with dropout on (its random state is replayed), with LoRA's frozen embeddings too."""
    from ftool.config import LoraConfig
    from ftool.finetune import apply_lora
    from ftool.models.hf import hf_classifier

    batch = {"input_ids": torch.randint(5, 30, (4, 12), generator=torch.Generator().manual_seed(0)),
             "attention_mask": torch.ones(4, 12, dtype=torch.long)}
    grads, saved = [], []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = hf_classifier(2, name_or_path=str(tiny_bert), pooling="mean", gradient_checkpointing=checkpointing)
        model = apply_lora(model, LoraConfig(r=4)) if lora else model
        model.train()
        count = [0]  # tensors kept for the backward pass
        with torch.autograd.graph.saved_tensors_hooks(lambda t: count.__setitem__(0, count[0] + 1) or t, lambda t: t):
            torch.manual_seed(1)  # the same dropout masks
            model(batch).logsumexp(1).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        saved.append(count[0])
    assert grads[0].keys() == grads[1].keys() and grads[0]
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-6) for n in grads[0])
    assert saved[1] < saved[0] / 2
    model = hf_classifier(2, name_or_path=str(tiny_bert), gradient_checkpointing=True).hf
    assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
