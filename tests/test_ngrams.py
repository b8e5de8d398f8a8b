"""model.ngrams: an NB-SVM of word n-grams beside a transformer, fitted in closed form before training
(ftool/models/ngrams.py). The tokenizers and the tiny BERT are made here (nothing is downloaded)."""

import json
import random
import re

import pytest
import torch

from ftool.data.text import PadBatch
from ftool.errors import FtoolError
from ftool.models.hf import load_tokenizer
from ftool.models.ngrams import BUCKETS, NgramLogits, ngram_features, word_starts
from ftool.registry import MODELS
from tests.conftest import FILLER, NEGATIVE, POSITIVE, ftool, read_json, sentiment_sentences
from tests.test_text import _env, cache  # noqa: F401  (the token cache fixture)


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory):
    """A real WordPiece tokenizer whose vocabulary splits 'lovable' into 'lo' '##vable'."""
    from transformers import BertTokenizerFast

    folder = tmp_path_factory.mktemp("wordpiece")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "very", "film", "lo", "##vable", "dull", ","]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    return BertTokenizerFast(str(folder / "vocab.txt"))


def features(tokenizer, texts, n=2):
    batch, _ = PadBatch(tokenizer.pad_token_id)([(torch.tensor(tokenizer(t)["input_ids"]), 0) for t in texts])
    grams, present = ngram_features(batch["input_ids"], batch["attention_mask"], word_starts(tokenizer), n)
    return [set(g[p.bool()].tolist()) for g, p in zip(grams, present)]


def test_ngrams_are_of_whole_words_each_counted_once_and_padding_adds_none(wordpiece):
    assert wordpiece.tokenize("a very very lovable film") == ["a", "very", "very", "lo", "##vable", "film"]
    alone, = features(wordpiece, ["a very very lovable film"])
    # words: [CLS] a very very lovable film [SEP]: 6 distinct, and 6 distinct bigrams ('very very' once)
    assert len(alone) == 12
    assert len(features(wordpiece, ["a very very lovable film"], n=1)[0]) == 6
    padded, longer = features(wordpiece, ["a very very lovable film", "a dull , dull , very dull film , a film"])
    assert padded == alone and all(0 <= g < BUCKETS for g in longer)
    reordered, = features(wordpiece, ["a very very film lovable"])  # the same words, other bigrams
    assert len(reordered & alone) == 6 + 3


def test_pieces_are_words_where_the_vocabulary_marks_no_continuations(tiny_bert):
    tokenizer = load_tokenizer(str(tiny_bert))  # (letters, no '##' pieces)
    starts = word_starts(tokenizer)
    assert starts.shape[0] == len(tokenizer) and bool(starts.all())


def _labelled(tokenizer, groups, per_class, seed):
    rng = random.Random(seed)
    samples = []
    for label, words in enumerate(groups):
        for _ in range(per_class):
            picked = rng.sample(FILLER, rng.randint(2, 6)) + rng.sample(words, 2)
            rng.shuffle(picked)
            samples.append((torch.tensor(tokenizer(" ".join(picked))["input_ids"]), torch.tensor(label)))
    rng.shuffle(samples)
    pad = PadBatch(tokenizer.pad_token_id)
    return [pad(samples[i:i + 32]) for i in range(0, len(samples), 32)]


@pytest.mark.parametrize("groups", [(NEGATIVE, POSITIVE), (NEGATIVE, POSITIVE[:4], POSITIVE[4:])],
                         ids=["two classes", "three classes"])
def test_the_nb_svm_fitted_on_a_split_classifies_new_texts_by_their_words(tiny_bert, groups):
    tokenizer = load_tokenizer(str(tiny_bert))
    model = NgramLogits(word_starts(tokenizer), len(groups), n=2, c=10.0)
    model.fit(_labelled(tokenizer, groups, 60, seed=0))
    assert model.table.abs().sum() > 0 and not model.table.requires_grad
    batches = _labelled(tokenizer, groups, 30, seed=1)  # sentences it has not seen
    correct = sum(int((model(x["input_ids"], x["attention_mask"]).argmax(1) == y).sum()) for x, y in batches)
    assert correct / (30 * len(groups)) >= 0.95


def test_evaluation_blends_the_nb_svm_in_and_training_trains_the_transformer_alone(tiny_bert):
    tokenizer = load_tokenizer(str(tiny_bert))
    model = MODELS.build("hf_classifier", {"name_or_path": str(tiny_bert), "ngrams": 2, "ngram_weight": 0.3},
                         num_outputs=2)
    model.ngrams.fit(_labelled(tokenizer, (NEGATIVE, POSITIVE), 40, seed=0))
    x, y = _labelled(tokenizer, (NEGATIVE, POSITIVE), 8, seed=1)[0]
    model.eval()
    with torch.no_grad():
        transformer, ngrams = model.hf(**x).logits, model.ngrams(x["input_ids"], x["attention_mask"])
        assert torch.allclose(model(x), 0.7 * transformer + 0.3 * ngrams, atol=1e-6)
    model.train()
    torch.manual_seed(0)
    out = model(x)
    torch.manual_seed(0)
    assert torch.equal(out, model.hf(**x).logits)  # (the same dropout)
    torch.nn.functional.cross_entropy(out, y).backward()
    assert model.ngrams.table.grad is None and model.hf.classifier.weight.grad is not None


@pytest.mark.parametrize("setting, message", [
    ({"ngrams": 9}, "model.ngrams: the longest word n-gram the NB-SVM reads, 1 to 5 (0: none), got 9"),
    ({"ngrams": 2, "ngram_weight": 1.5}, "model.ngram_weight: the NB-SVM's share of the logits, in [0, 1], got 1.5"),
    ({"ngrams": 2, "ngram_c": 0.0}, "model.ngram_c: the NB-SVM's inverse regularization strength, > 0, got 0.0"),
])
def test_out_of_range_ngram_settings_are_errors(tiny_bert, setting, message):
    with pytest.raises(FtoolError, match=re.escape(message)):
        MODELS.build("hf_classifier", {"name_or_path": str(tiny_bert), **setting}, num_outputs=2)


def test_a_run_with_ngrams_fits_them_and_eval_predict_export_use_them(tmp_path, tiny_bert, cache):
    pos, neg = sentiment_sentences(150)
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "reviews.pos").write_text("\n".join(pos) + "\n")
    (texts / "reviews.neg").write_text("\n".join(neg) + "\n")
    run, env = tmp_path / "run", _env(cache)
    # one epoch at a small LR: the transformer alone learns little; the NB-SVM reads the words
    result = ftool("finetune", "model=hf_classifier", f"model.name_or_path={tiny_bert}", "model.ngrams=2",
                   "data=text_files", f"data.root={texts}", "data.max_length=16", "data.batch_size=16",
                   "optimizer.lr=1e-5", "trainer.epochs=1", "trainer.progress=false", f"hydra.run.dir={run}",
                   cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    summary = read_json(run / "summary.json")
    assert summary["metrics"]["test/accuracy"] >= 0.95
    assert summary["finetune"]["trainable_parameters"] < summary["parameters"] - 2 * BUCKETS  # (fitted, not trained)

    def evaluated(*overrides):
        result = ftool("eval", f"ckpt={run}", *overrides, cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        return read_json(run / "eval.json")["metrics"]["test/accuracy"]

    assert evaluated() == summary["metrics"]["test/accuracy"]
    assert evaluated("model.ngram_weight=1") >= 0.95  # the NB-SVM alone
    assert evaluated("model.ngram_weight=0") < 0.8  # the transformer alone, after one slow epoch

    result = ftool("predict", f"ckpt={run}", "input=a gorgeous witty film", "input=the plot is dull clichés",
                   "output=json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert [p["label"] for p in json.loads(result.stdout)] == ["pos", "neg"]
    for fmt in ("safetensors", "torchscript", "pt2", "onnx"):  # each checked against the checkpoint's outputs
        result = ftool("export", f"ckpt={run}", f"format={fmt}", cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
    # transformers' save_pretrained folder would leave the NB-SVM out: the weights file instead
    assert (run / "export" / "model.safetensors").is_file() and not (run / "export" / "hf").exists()
