#!/usr/bin/env bash
# The GPU paths, checked in under 8 minutes on one GPU: fp32, bf16 and fp16 training, torch.compile,
# channels_last, a resume, and SimpleCNN at batch 512 with the data held on the GPU (data.loader=tensor)
# against the same run through a DataLoader (what a hand-written loop does; target: >= 3x).
# Prints a Markdown table for BENCHMARKS.md (and writes it to $OUT or ./gpu_check.md).
#
#     bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')" || exit 1
work=$(mktemp -d)
table="${OUT:-.}/gpu_check.md"
job=(model=simplecnn data=synthetic "data.shape=[3,32,32]" data.train_size=16384 data.batch_size=512
     trainer.epochs=2 trainer.progress=false trainer.accelerator=cuda)

row() {  # row NAME OVERRIDES...: one run (in $work/NAME), one table row (status, samples/s, first step, test accuracy)
  local name=$1; shift
  timeout 300 ftool train "hydra.run.dir=$work/$name" "$@" > "$work/$name.log" 2>&1
  summary "$name" "$work/$name"
}

summary() {  # summary NAME RUN_DIR
  python - "$1" "$2" "$2.log" <<'PY'
import json, sys
name, run, log = sys.argv[1:]
try:
    s = json.load(open(f"{run}/summary.json"))
except OSError:
    s = {"status": "failed"}
t = s.get("timing") or {}
error = "" if s["status"] == "completed" else open(log).read().strip().splitlines()[-1][:80]
print(f"| {name} | {s['status']} {error} | {t.get('train_samples_per_s') or 0:,.0f} | "
      f"{t.get('first_step_seconds')} | {(s.get('metrics') or {}).get('test/accuracy', float('nan')):.4f} |")
PY
}

{
  echo "## GPU check: $(python -c 'import torch; print(torch.cuda.get_device_name())'), $(date -u +%F)"
  echo
  echo "| run | status | train samples/s | first step (s) | test accuracy |"
  echo "|---|---|---|---|---|"
  row fp32 "${job[@]}" trainer.precision=32
  row bf16 "${job[@]}" trainer.precision=bf16-mixed
  row fp16 "${job[@]}" trainer.precision=fp16-mixed
  row compile "${job[@]}" trainer.compile=true
  row channels_last "${job[@]}" model=resnet18 trainer.channels_last=true trainer.precision=bf16-mixed
  timeout 300 ftool train trainer.resume="$work/fp32" trainer.epochs=3 > "$work/fp32.log" 2>&1
  summary "fp32, resumed to 3 epochs" "$work/fp32"
  row "simplecnn b512, DataLoader" "${job[@]}" data.loader=dataloader
  row "simplecnn b512, tensors on the GPU" "${job[@]}" data.loader=tensor
  row "simplecnn b512, tensors on the GPU, bf16, compiled" "${job[@]}" data.loader=tensor trainer.precision=bf16-mixed \
      trainer.compile=true
  echo
} | tee "$table"
