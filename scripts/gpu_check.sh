#!/usr/bin/env bash
# Step 2 on a machine with a GPU (after scripts/gpu_install.sh): the --device cuda checks.
#   1. the GPU and torch; 2. bitstreams written on the CPU decode on the GPU to the CPU's pixels
#   (within a grey level) and the GPU writes the same bytes; 3. both speed benchmarks on the GPU.
# Results go to OUT (default results/gpu/): check.log, train_speed_cuda.json,
# codec_speed_cuda.json. Environment: OUT, PY (default .venv/bin/python), DEVICE (default
# cuda; cuda:1 for another card, cpu for a dry run on a machine without one).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu}
PY=${PY:-.venv/bin/python}
export DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
log() { echo "== $*" | tee -a "$OUT/check.log"; }

log "1. environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$OUT/check.log"
"$PY" -m icmbridge.cli --version | tee -a "$OUT/check.log"

log "2. bitstreams across devices ($DEVICE)"
"$PY" - <<'PY' 2>&1 | tee -a "$OUT/check.log"
import os, time
from icmbridge.codec import bitstream
from icmbridge.codec.store import load_codec
from icmbridge.data import get_set
from icmbridge.imageio import array_to_tensor
dev = os.environ["DEVICE"]
cpu, gpu = load_codec("base"), load_codec("base", device=dev)
for s in get_set("photos", "test"):
    x = array_to_tensor(s.image)
    data = bitstream.encode(cpu, x)
    t = time.perf_counter(); a = bitstream.decode(cpu, data); tc = time.perf_counter() - t
    t = time.perf_counter(); b = bitstream.decode(gpu, data).cpu(); tg = time.perf_counter() - t
    d = (a * 255).round().sub((b * 255).round()).abs().max().item()
    same = bitstream.encode(gpu, x.to(dev)) == data
    print(f"{s.name}: {x.shape[3]}x{x.shape[2]} decode cpu {tc:.2f}s {dev} {tg:.2f}s, max |Δ| "
          f"{d:.0f} grey levels, bytes written on {dev} identical: {same}")
PY

log "3. speed benchmarks on $DEVICE"
"$PY" benchmarks/train_speed.py --device "$DEVICE" --reps 20 --layouts channels-last,contiguous \
  --json "$OUT/train_speed_cuda.json" > /dev/null 2>> "$OUT/check.log"
"$PY" benchmarks/codec_speed.py --device "$DEVICE" --runs 1 --reps 5 \
  --out "$OUT/codec_speed_cuda.json" >> "$OUT/check.log" 2>&1
log "done: $OUT"
