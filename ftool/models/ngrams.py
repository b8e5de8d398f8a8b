"""NB-SVM (Wang and Manning, 2012): a linear classifier of the word 1..n-grams in a text, each scaled by
its naive-Bayes log-count ratio, fitted in closed form on the training split before training.
`model=hf_nbsvm` puts one beside a fine-tuned transformer and blends their logits in evaluation: it
weighs the exact words and phrases a sentence holds, which the transformer reads through its
pretraining, and the two err on different sentences (Mesnil et al., 2014, ensembled it so).

It reads the transformer's own token ids: words are its tokenizer's pieces joined back together (a
WordPiece `##` piece continues the word before it, a BPE or SentencePiece piece without its
word-start mark does), and each n-gram of words is hashed into BUCKETS weights, so no vocabulary is
kept and the model exports as plain tensor operations.
"""

from __future__ import annotations

from typing import Iterable, Literal

import torch
from torch import nn

from ftool.models.hf import HFClassifier, hf_classifier, load_tokenizer
from ftool.registry import MODELS

BUCKETS = 2**20  # hashed n-gram weights per class: 8 MB for two classes; MR's word bigrams are ~150,000
_PRIME = 2_147_483_647  # 2^31 - 1: hashes stay below it, so products of two fit in int64
_MIX = (1_000_003, 998_244_353, 754_974_721)  # multipliers of a piece, of a piece after another, of an n-gram
_WORD_START_MARKS = ("Ġ", "▁")  # byte-level BPE's (GPT-2, RoBERTa) and SentencePiece's word-start marks


def word_starts(tokenizer) -> torch.Tensor:
    """Per token id: whether the token begins a word (special tokens do)."""
    vocab = tokenizer.get_vocab()
    starts = torch.ones(max(len(tokenizer), max(vocab.values()) + 1), dtype=torch.bool)
    tokens = list(vocab)
    if any(t.startswith("##") for t in tokens):  # WordPiece: BERT, DistilBERT
        continues = [t.startswith("##") for t in tokens]
    else:
        mark = next((m for m in _WORD_START_MARKS if any(t.startswith(m) for t in tokens)), None)
        continues = [mark is not None and not t.startswith(mark) for t in tokens]  # (no mark: pieces are words)
    special = set(tokenizer.all_special_ids)
    for token, cont in zip(tokens, continues):
        starts[vocab[token]] = not cont or vocab[token] in special
    return starts


def ngram_features(input_ids: torch.Tensor, attention_mask: torch.Tensor, starts: torch.Tensor,
                   n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(bucket ids, weights), each (batch, positions): every distinct word 1..n-gram of each text once,
    with weight 1; the other positions weight 0."""
    # One more padding position: no slice below is then one wide, which torch.export would refuse for
    # texts of two tokens (it treats sizes 0 and 1 apart)
    valid = nn.functional.pad(attention_mask, (0, 1)).bool()
    ids = nn.functional.pad(input_ids.long(), (0, 1))
    cont = ~starts[ids] & valid
    cont[:, 0] = False
    before = torch.cat([torch.zeros_like(ids[:, :1]), ids[:, :-1]], 1)
    # A word's hash: the sum of its pieces' terms, each term a piece (first) or a piece after the one before it
    term = torch.where(cont, (before * _MIX[1] + ids) % _PRIME, (ids * _MIX[0] + 1) % _PRIME) * valid
    running = term.cumsum(1)
    ends = valid & ~torch.cat([cont[:, 1:], torch.zeros_like(cont[:, :1])], 1)
    length = ids.shape[1]
    position = torch.arange(length, device=ids.device).expand_as(ids)
    order = torch.argsort(torch.where(ends, position, position + length), dim=1)  # word ends first, in order
    at_ends = running.gather(1, order)
    words = (at_ends - torch.cat([torch.zeros_like(at_ends[:, :1]), at_ends[:, :-1]], 1)) % _PRIME
    real = ends.gather(1, order)  # the first `words in the text` columns
    grams, kept, h = [], [], words
    for k in range(1, n + 1):
        if k > 1:
            h = (h[:, :-1] * _MIX[2] + words[:, k - 1:]) % _PRIME
        grams.append(h % BUCKETS)
        kept.append(real[:, k - 1:])
    grams, kept = torch.cat(grams, 1), torch.cat(kept, 1)
    # Each distinct n-gram counts once (NB-SVM's binary features): sorted, a repeat follows its first
    ordered = torch.sort(torch.where(kept, grams, torch.full_like(grams, BUCKETS)), dim=1).values
    first = torch.cat([torch.ones_like(ordered[:, :1], dtype=torch.bool), ordered[:, 1:] != ordered[:, :-1]], 1)
    present = first & (ordered < BUCKETS)
    return torch.where(present, ordered, torch.zeros_like(ordered)), present.to(torch.float32)


class NBSVM(nn.Module):
    """Logits of an NB-SVM over word 1..`n`-grams: per class, one weight per hashed n-gram and a bias.
    The weights are parameters no optimizer moves (`fit_before_training` sets them), so checkpoints, DDP
    and FSDP carry them as the model's other weights."""

    def __init__(self, starts: torch.Tensor, num_classes: int, n: int, c: float):
        super().__init__()
        self.n, self.c = n, c
        self.register_buffer("starts", starts)
        self.table = nn.Parameter(torch.zeros(BUCKETS, num_classes), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(num_classes), requires_grad=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        grams, present = ngram_features(input_ids, attention_mask, self.starts, self.n)
        weights = nn.functional.embedding(grams, self.table)  # (batch, positions, classes)
        return (weights * present.unsqueeze(-1).to(weights.dtype)).sum(1) + self.bias

    @torch.no_grad()
    def fit_before_training(self, batches: Iterable[tuple[dict, torch.Tensor]]) -> None:
        """The closed-form fit (ftool.components.fit_before_training calls it) on the training split's
        (text batch, labels) before the rest trains: for each class against the rest, the
        n-grams' log-count ratio r (add-one smoothed), then a logistic regression (L2, inverse strength
        `c`) on the binary features scaled by r; a class's weights are the regression's times r."""
        import numpy as np
        import scipy.sparse as sp
        from sklearn.linear_model import LogisticRegression

        rows, columns, labels, count = [], [], [], 0
        for batch, y in batches:
            grams, present = ngram_features(batch["input_ids"], batch["attention_mask"], self.starts, self.n)
            at = present.bool()
            rows.append((torch.nonzero(at)[:, 0] + count).numpy())
            columns.append(grams[at].numpy())
            labels.append(y.numpy())
            count += len(y)
        cols = np.concatenate(columns)
        x = sp.csr_matrix((np.ones(len(cols)), (np.concatenate(rows), cols)), shape=(count, BUCKETS))
        y = np.concatenate(labels)
        classes = self.table.shape[1]
        self.table.zero_()
        self.bias.zero_()
        for k in range(1, 2) if classes == 2 else range(classes):  # two classes: one regression (logits 0, s)
            positive = y == k
            if positive.all() or not positive.any():  # (a class the split lacks: its weights stay 0)
                continue
            p = np.asarray(x[positive].sum(0)).ravel() + 1.0
            q = np.asarray(x[~positive].sum(0)).ravel() + 1.0
            r = np.log(p / p.sum()) - np.log(q / q.sum())
            regression = LogisticRegression(C=self.c, max_iter=1000).fit(x.multiply(r).tocsr(), positive)
            self.table[:, k] = torch.from_numpy(regression.coef_[0] * r).float()
            self.bias[k] = float(regression.intercept_[0])


class NBSVMBlend(HFClassifier):
    """A transformer classifier whose evaluation logits are `weight` of an NB-SVM's and the rest its
    own; training trains the transformer alone, as if on its own."""

    def __init__(self, hf: nn.Module, head: nn.Module | None, nbsvm: NBSVM, weight: float):
        super().__init__(hf, head)
        self.nbsvm, self.weight = nbsvm, weight

    def forward(self, batch: dict[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        logits = super().forward(batch)
        if self.training:
            return logits
        if isinstance(batch, torch.Tensor):
            batch = {"input_ids": batch, "attention_mask": torch.ones_like(batch)}
        return (1 - self.weight) * logits + self.weight * self.nbsvm(batch["input_ids"], batch["attention_mask"])


@MODELS.register("hf_nbsvm")
def hf_nbsvm(num_outputs, pretrained=True, name_or_path: str = "bert-base-uncased",
             pooling: Literal["cls", "mean"] = "cls", dropout: float | None = None, gradient_checkpointing: bool = False,
             ngrams: int = 2, ngram_weight: float = 0.3, ngram_c: float = 10.0) -> NBSVMBlend:
    """`hf_classifier` beside an NB-SVM of word 1..`ngrams`-grams (`ngram_c`: its logistic regression's
    inverse L2 strength), whose share of evaluation's logits is `ngram_weight` (0: the transformer
    alone, 1: the NB-SVM alone)."""
    base = hf_classifier(num_outputs, pretrained, name_or_path, pooling, dropout, gradient_checkpointing)
    nbsvm = NBSVM(word_starts(load_tokenizer(name_or_path)), num_outputs, ngrams, ngram_c)
    model = NBSVMBlend(base.hf, base.head, nbsvm, ngram_weight)
    if hasattr(base, "pretrained_parameters"):
        model.pretrained_parameters = base.pretrained_parameters
    return model
