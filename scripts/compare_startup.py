"""Startup of two ftool checkouts, run alternately in this environment: `ftool train
trainer.epochs=1 trainer.progress=false` (summary.json's first_step_seconds, and the process's
wall time), then `ftool eval ckpt=<that run>`. Prints the medians and their ratio (second / first).

    git worktree add /tmp/before <commit>
    python scripts/compare_startup.py /tmp/before . --repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(args: list[str], root: Path, cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ftool", *args], cwd=cwd, env={**os.environ, "PYTHONPATH": str(root)},
                   check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("before", type=Path, help="a checkout of the version to compare against")
    p.add_argument("after", type=Path, help="a checkout of the version measured")
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args()
    roots = {"before": a.before.resolve(), "after": a.after.resolve()}
    figures = {name: {"first step": [], "train": [], "eval": []} for name in roots}
    for _ in range(a.repeats):
        for name, root in roots.items():  # alternating, so a slow minute on a shared machine hits both
            with tempfile.TemporaryDirectory() as tmp:
                run = f"{tmp}/run"
                figures[name]["train"].append(timed(["train", "trainer.epochs=1", "trainer.progress=false",
                                                     f"hydra.run.dir={run}"], root, tmp))
                timing = json.loads(Path(run, "summary.json").read_text())["timing"]
                figures[name]["first step"].append(timing["first_step_seconds"])
                figures[name]["eval"].append(timed(["eval", f"ckpt={run}"], root, tmp))
    print(f"| median of {a.repeats} | before | after | ratio |\n|---|---|---|---|")
    for what in ("first step", "train", "eval"):
        before, after = (statistics.median(figures[name][what]) for name in roots)
        print(f"| {what} | {before:.2f} s | {after:.2f} s | **{after / before:.2f}x** |")


if __name__ == "__main__":
    main()
