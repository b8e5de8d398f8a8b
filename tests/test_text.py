"""Text models end to end on a tiny BERT (nothing is downloaded): fine-tune, eval, predict, export, LoRA,
and the NB-SVM beside the transformer (model=hf_nbsvm)."""

import json
import random

import pytest
import torch

from ftool.data.text import PadBatch
from ftool.models.hf import load_tokenizer
from ftool.models.ngrams import BUCKETS, NBSVM, ngram_features, word_starts
from ftool.registry import MODELS
from tests.conftest import FILLER, NEGATIVE, POSITIVE, read_json


@pytest.fixture(autouse=True)
def token_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FTOOL_CACHE_DIR", str(tmp_path / "cache"))


def text_run(tiny_bert, *more: str) -> tuple[str, ...]:
    return ("data=text_files", "data.root=texts", f"model.name_or_path={tiny_bert}", "optimizer.lr=3e-3",
            "trainer.epochs=4", "trainer.progress=false", "data.batch_size=16", "data.max_length=16", *more)


def test_finetune_eval_predict_and_export_a_text_model(cli, tmp_path, tiny_bert, sentiment_files):
    result = cli("finetune", "model=hf_classifier", *text_run(tiny_bert), "hydra.run.dir=run")
    assert result.code == 0, result.err
    summary = read_json(tmp_path / "run/summary.json")
    assert summary["metrics"]["test/accuracy"] >= 0.8 and summary["finetune"]["pretrained_parameters"] > 0
    assert cli("eval", "ckpt=run").code == 0
    assert read_json(tmp_path / "run/eval.json")["metrics"]["test/accuracy"] == summary["metrics"]["test/accuracy"]
    (tmp_path / "new.txt").write_text("a great witty film\nboring and dull\n")
    (tmp_path / "reviews.csv").write_text("review\nsuperb fun\n")
    long = "a great witty film , " * 40  # longer than a file's name may be: a text, cut to max_length
    result = cli("predict", "ckpt=run", "input=a brilliant moving film", "input=new.txt", "input=reviews.csv",
                 f"input={long}", "text_column=review", "output=json")
    labels = {r["input"]: r["label"] for r in json.loads(result.out)}
    assert labels == {"a brilliant moving film": "pos", "a great witty film": "pos", "boring and dull": "neg",
                      "superb fun": "pos", long: "pos"}, result.err
    assert "1 of 5 texts (20.0%) fill data.max_length=16 tokens" in result.err
    for format in ("onnx", "pt2", "safetensors"):
        result = cli("export", "ckpt=run", f"format={format}")
        assert result.code == 0 and "max |difference|" in result.out, result.err
    assert (tmp_path / "run/export/hf/config.json").is_file()  # (the model's own head: a save_pretrained folder)


def test_lora_trains_adapters_exports_them_merged_and_carries_over_to_finetune_from(cli, tmp_path, tiny_bert,
                                                                                  sentiment_files):
    result = cli("finetune", "model=hf_classifier", *text_run(tiny_bert, "finetune.lora.r=4"), "hydra.run.dir=lora")
    assert result.code == 0, result.err
    finetune = read_json(tmp_path / "lora/summary.json")["finetune"]
    assert finetune["trainable_parameters"] < finetune["pretrained_parameters"] / 5
    assert cli("export", "ckpt=lora", "format=pt2").code == 0
    result = cli("finetune", "model=hf_classifier", *text_run(tiny_bert, "trainer.epochs=1", "finetune.from=lora"))
    assert result.code == 0 and "tensors from lora" in result.out, result.err


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory):
    """A WordPiece tokenizer whose vocabulary splits 'lovable' into 'lo' '##vable'."""
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
    alone, = features(wordpiece, ["a very very lovable film"])
    assert len(alone) == 12  # [CLS] a very lovable film [SEP]: 6 words and 6 distinct bigrams
    padded, longer = features(wordpiece, ["a very very lovable film", "a dull , dull , very dull film , a film"])
    assert padded == alone and all(0 <= g < BUCKETS for g in longer)
    reordered, = features(wordpiece, ["a very very film lovable"])
    assert len(reordered & alone) == 6 + 3


def labelled(tokenizer, per_class: int, seed: int):
    rng, samples = random.Random(seed), []
    for label, words in enumerate((NEGATIVE, POSITIVE)):
        for _ in range(per_class):
            picked = rng.sample(FILLER, rng.randint(2, 6)) + rng.sample(words, 2)
            rng.shuffle(picked)
            samples.append((torch.tensor(tokenizer(" ".join(picked))["input_ids"]), torch.tensor(label)))
    rng.shuffle(samples)
    return [PadBatch(tokenizer.pad_token_id)(samples[i:i + 32]) for i in range(0, len(samples), 32)]


def test_the_nb_svm_fitted_before_training_classifies_new_texts_and_blends_into_evaluation(tiny_bert):
    tokenizer = load_tokenizer(str(tiny_bert))
    nbsvm = NBSVM(word_starts(tokenizer), 2, n=2, c=10.0)
    nbsvm.fit_before_training(labelled(tokenizer, 100, seed=0))
    batches = labelled(tokenizer, 50, seed=1)
    right = sum(int((nbsvm(b["input_ids"], b["attention_mask"]).argmax(1) == y).sum()) for b, y in batches)
    assert right / 100 >= 0.95
    model = MODELS.build("hf_nbsvm", {"name_or_path": str(tiny_bert), "ngram_weight": 0.3, "dropout": 0.0},
                         num_outputs=2, pretrained=False)
    model.nbsvm.load_state_dict(nbsvm.state_dict())
    batch = batches[0][0]
    transformer = model.hf(**batch).logits
    expected = 0.7 * transformer + 0.3 * nbsvm(batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(model.eval()(batch), expected, atol=5e-4)
    assert torch.allclose(model.train()(batch), transformer, atol=5e-4)  # training trains the transformer alone
    assert not any(p.requires_grad for p in model.nbsvm.parameters())


def test_a_run_with_an_nb_svm_fits_it_and_eval_weighs_it_as_asked(cli, tmp_path, tiny_bert, sentiment_files):
    result = cli("train", "model=hf_nbsvm", *text_run(tiny_bert, "trainer.epochs=1"), "hydra.run.dir=blend")
    assert result.code == 0 and "NBSVM fitted on" in result.out, result.err
    alone = cli("eval", "ckpt=blend", "model.ngram_weight=1")
    assert alone.code == 0 and read_json(tmp_path / "blend/eval.json")["metrics"]["test/accuracy"] >= 0.9
    assert cli("export", "ckpt=blend", "format=onnx").code == 0


def test_gradient_checkpointing_keeps_the_gradients(tiny_bert):
    batch = {"input_ids": torch.tensor([[2, 5, 6, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = MODELS.build("hf_classifier", {"name_or_path": str(tiny_bert), "gradient_checkpointing": checkpointing,
                                               "dropout": 0.0}, num_outputs=2).train()
        model(batch).sum().backward()
        grads.append(model.hf.bert.embeddings.word_embeddings.weight.grad)
    assert torch.allclose(*grads, atol=1e-6)
