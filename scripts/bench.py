"""ftool's speed, measured against a baseline in the same run (these machines are shared and noisy:
quote ratios, not absolute figures). Writes a table to BENCHMARKS.md.

    python scripts/bench.py                       # everything (about 10 minutes on 2 CPU cores)
    python scripts/bench.py --sections overhead --repeats 7

Sections:
  overhead   train samples/s of `ftool train model=simplecnn data=synthetic` over the hand-written
             reference loop (../shared/bench/reference_loop.py) on the same job: 8,192 3x32x32
             samples, batch 128, 2 epochs, Adam, no validation; fp32 and bf16. Runs alternate,
             the figure is the median of `--repeats` runs of each. Target: >= 0.97. A third row
             gives both programs ftool's malloc settings: the training loop's overhead alone.
  mlp        the seed MLP (784-128-64-10) on 16,384 random MNIST-shaped samples, batch 64, 2 epochs,
             Adam, default config, against the reference loop with a DataLoader and with shuffled
             index slicing of the in-memory tensors (`--model mlp [--loader slicing]`), paired as
             above. Targets: >= 0.95x the slicing loop; SimpleCNN (overhead fp32) >= 1.0x.
  precision  bf16-mixed over fp32 for simplecnn, convnet, resnet18 (ftool, this device).
  compile    torch.compile over eager for the same models.
  startup    seconds from `ftool train` start to the first optimizer step (summary.json's
             timing.first_step_seconds), next to `python -c "import torch"` for scale.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = Path(os.environ.get("FTOOL_REFERENCE_LOOP", ROOT.parent / "shared" / "bench" / "reference_loop.py"))
OVERHEAD_JOB = ["model=simplecnn", "data=synthetic", "data.shape=[3,32,32]", "data.num_classes=10",
                "data.train_size=8192", "data.val_fraction=0", "data.batch_size=128", "trainer.epochs=2",
                "optimizer=adam", "optimizer.lr=0.001", "trainer.validate=false", "trainer.progress=false"]
MODELS = ("simplecnn", "convnet", "resnet18")
MLP_JOB = ["model=mlp", "data=synthetic", "data.shape=[1,28,28]", "data.num_classes=10", "data.train_size=16384",
           "data.val_fraction=0", "data.batch_size=64", "trainer.epochs=2", "optimizer=adam", "optimizer.lr=0.001",
           "trainer.validate=false", "trainer.progress=false"]
MLP_REFERENCE = ["--model", "mlp", "--samples", "16384", "--batch-size", "64", "--epochs", "2"]
CNN_REFERENCE = ["--samples", "8192", "--batch-size", "128", "--epochs", "2"]


# glibc's malloc as ftool sets it (ftool/engine/allocator.py), as environment variables: given to
# both programs, the comparison measures the training loop alone.
SAME_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "268435456"}


def ftool_train(overrides: list[str], env: dict | None = None) -> dict:
    """One `ftool train` in a subprocess; its summary.json's timing."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "ftool", "train", *overrides, f"hydra.run.dir={tmp}/run"]
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, env={**os.environ, **(env or {})})
        if result.returncode != 0:
            sys.exit(f"bench: ftool failed: {' '.join(cmd)}\n{result.stderr}")
        return json.loads((Path(tmp) / "run" / "summary.json").read_text())["timing"]


def reference(args: list[str], env: dict | None = None) -> dict:
    result = subprocess.run([sys.executable, str(REFERENCE), *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})})
    if result.returncode != 0:
        sys.exit(f"bench: the reference loop failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def paired(name: str, job: list[str], ref_args: list[str], repeats: int, env: dict | None = None) -> list[str]:
    """ftool's train samples/s over the reference loop's on the same job, runs alternating (and who goes
    first alternating) so drift hits both alike: a table row with the median of the paired ratios."""
    ours, ref = [], []
    for i in range(repeats):
        pair = [lambda: ours.append(ftool_train(job, env)["train_samples_per_s"]),
                lambda: ref.append(reference(ref_args, env)["train_samples_per_s"])]
        for run in (pair if i % 2 == 0 else pair[::-1]):
            run()
    ratio = statistics.median(o / r for o, r in zip(ours, ref))
    print(f"{name}: ftool {statistics.median(ours):.0f} vs reference {statistics.median(ref):.0f} samples/s: "
          f"{ratio:.3f}x (median of paired ratios)", flush=True)
    return [name, f"{statistics.median(ours):.0f}", f"{statistics.median(ref):.0f}", f"**{ratio:.3f}x**",
            f"median of {repeats} paired ratios"]


def overhead(repeats: int, bf16_ok: bool) -> list[list[str]]:
    rows = []
    for name, bf16, env in (("fp32", False, None), ("bf16", True, None),
                            ("fp32, both with ftool's malloc settings", False, SAME_MALLOC)):
        if bf16 and not bf16_ok:
            rows.append([f"overhead {name}", "skipped: no bf16 on this CPU", "", "", ""])
            continue
        precision = ["trainer.precision=bf16-mixed"] if bf16 else []
        rows.append(paired(f"overhead {name}", OVERHEAD_JOB + precision, CNN_REFERENCE + (["--bf16"] if bf16 else []),
                           repeats, env))
    return rows


def seed_mlp(repeats: int) -> list[list[str]]:
    return [paired("seed MLP, batch 64: over the DataLoader loop", MLP_JOB, MLP_REFERENCE, repeats),
            paired("seed MLP, batch 64: over the slicing loop", MLP_JOB, MLP_REFERENCE + ["--loader", "slicing"],
                   repeats),
            paired("seed MLP, batch 64: over the slicing loop, both with ftool's malloc settings", MLP_JOB,
                   MLP_REFERENCE + ["--loader", "slicing"], repeats, SAME_MALLOC)]


def model_job(model: str) -> list[str]:
    size = "2048" if model == "resnet18" else "8192"  # resnet18 is ~20x slower per sample on a CPU
    return [f"model={model}", "data=synthetic", "data.shape=[3,32,32]", f"data.train_size={size}",
            "data.val_fraction=0", "trainer.epochs=1", "trainer.validate=false", "trainer.progress=false"]


def speedups(section: str, repeats: int, bf16_ok: bool) -> list[list[str]]:
    if section == "precision" and not bf16_ok:
        return [["bf16 over fp32", "skipped: no bf16 on this CPU", "", "", ""]]
    base, variant = (["trainer.precision=32"], ["trainer.precision=bf16-mixed"]) if section == "precision" \
        else (["trainer.compile=false"], ["trainer.compile=true"])
    label = "bf16 over fp32" if section == "precision" else "compile over eager"
    rows = []
    for model in MODELS:
        a, b = [], []
        for _ in range(repeats):
            a.append(ftool_train(model_job(model) + base)["train_samples_per_s"])
            b.append(ftool_train(model_job(model) + variant)["train_samples_per_s"])
        ratio = statistics.median(b) / statistics.median(a)
        print(f"{label} {model}: {statistics.median(b):.0f} vs {statistics.median(a):.0f} samples/s: {ratio:.2f}x",
              flush=True)
        rows.append([f"{label}: {model}", f"{statistics.median(b):.0f}", f"{statistics.median(a):.0f}",
                     f"**{ratio:.2f}x**", f"median of {repeats}; {model_job(model)[3]}"])
    return rows


def startup(repeats: int) -> list[list[str]]:
    first, imports = [], []
    for _ in range(repeats):
        first.append(ftool_train(["trainer.epochs=1", "trainer.progress=false"])["first_step_seconds"])
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        imports.append(time.perf_counter() - start)
    print(f"startup: first step after {statistics.median(first):.2f} s; `import torch` takes "
          f"{statistics.median(imports):.2f} s", flush=True)
    return [["time to first step (default `ftool train`)", f"{statistics.median(first):.2f} s",
             f"{statistics.median(imports):.2f} s", "", f"baseline: `python -c \"import torch\"`; median of {repeats}"]]


def machine() -> str:
    import torch

    from ftool.engine.accelerator import cpu_has_bf16  # bf16 figures depend on it: emulated, it is far slower

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() \
        else platform.processor()
    return (f"{cpu}{'' if cpu_has_bf16() else ' without native bf16'}, {os.cpu_count()} cores, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}, "
            f"{platform.system()}")


NOTES = """\
Overhead rows: ftool's `timing.train_samples_per_s` over the reference loop's, same job (8,192
3x32x32 samples, batch 128, 2 epochs, Adam, no validation). ftool sets glibc's malloc to keep
tensor-sized blocks (ftool/engine/allocator.py), which is most of its lead over the reference as
written; the third row gives both programs those settings, leaving the training loop's own
overhead. Seed MLP rows: the default config (the data held as tensors, batched by indexing; fused
Adam) against the reference loop through a DataLoader and with index slicing (torch's default Adam).
Model rows: ftool on synthetic 3x32x32 data, 1 epoch, batch 128; the first (compiling, warming) step
is not timed.
"""


def write_markdown(path: Path, script: str, title: str, command: str, rows: list[list[str]], notes: str,
                   header: tuple[str, ...] = ("measurement", "ftool / variant", "baseline", "ratio", "how")) -> None:
    """Replace `script`'s section of BENCHMARKS.md (other scripts keep theirs)."""
    begin, end = f"<!-- {script}: begin -->", f"<!-- {script}: end -->"
    table = [f"| {' | '.join(header)} |", "|" + "---|" * len(header)]
    table += [f"| {' | '.join(r)} |" for r in rows]
    block = "\n".join([begin, f"## {title} (`{script}`)", "",
                       f"- command: `{command}`", f"- machine: {machine()}",
                       f"- date: {dt.date.today().isoformat()}", "", *table, "", notes, end])
    text = path.read_text() if path.exists() else "# Benchmarks\n\nFigures from the scripts in `scripts/`.\n"
    if begin in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", default="overhead,mlp,precision,compile,startup")
    p.add_argument("--repeats", type=int, default=5, help="runs of each measurement (the median is kept)")
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    a = p.parse_args()
    sections = a.sections.split(",")
    unknown = set(sections) - {"overhead", "mlp", "precision", "compile", "startup"}
    if unknown:
        sys.exit(f"bench: unknown section(s) {', '.join(sorted(unknown))}")
    if {"overhead", "mlp"} & set(sections) and not REFERENCE.is_file():
        sys.exit(f"bench: the reference loop is not at {REFERENCE}; set FTOOL_REFERENCE_LOOP")
    from ftool.engine.accelerator import cpu_has_bf16

    bf16_ok = cpu_has_bf16()
    rows = []
    if "overhead" in sections:
        rows += overhead(a.repeats, bf16_ok)
    if "mlp" in sections:
        rows += seed_mlp(a.repeats)
    for section in ("precision", "compile"):
        if section in sections:
            rows += speedups(section, max(1, a.repeats // 2), bf16_ok)
    if "startup" in sections:
        rows += startup(a.repeats)
    write_markdown(a.output, "scripts/bench.py", "Training speed", "python scripts/bench.py " + " ".join(sys.argv[1:]),
                   rows, NOTES)
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
