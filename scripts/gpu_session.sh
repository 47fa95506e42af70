#!/usr/bin/env bash
# Runs ON the lent GPU machine (see scripts/gpu_prepare.sh), in a copy of the repository with
# results/scaling/$NAME/snapshot in it, and writes what comes back under $OUT:
#   1. environment (GPU, torch), 2. the --device cuda checks of the CLI (a CPU-written bitstream
#   decoded on the GPU against the CPU decode), 3. both speed benchmarks on cuda,
#   4. the long run's next stretch on the GPU (STRETCH seconds) from its snapshot,
#   5. the new snapshot and the logs.
# Budget: ~9 minutes in all (a lease is 15 minutes of device time, starts included).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
NAME=${NAME:-mbt64-mse}
STRETCH=${STRETCH:-300}
export DEVICE=${DEVICE:-cuda}  # DEVICE=cpu: a dry run of this script on a machine without a GPU
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
PY=${PY:-python3}
log() { echo "== $*" | tee -a "$OUT/session.log"; }

log "1. environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$OUT/session.log"
$PY -c "import torch, compressai; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'compressai', compressai.__version__)" 2>&1 | tee -a "$OUT/session.log"

log "2. --device cuda checks"
$PY - <<'PY' 2>&1 | tee -a "$OUT/session.log"
import time, numpy as np, torch
from icmbridge.codec import bitstream
from icmbridge.codec.store import load_codec
from icmbridge.data import get_set
from icmbridge.imageio import array_to_tensor
import os
dev = os.environ["DEVICE"]
cpu, gpu = load_codec("base"), load_codec("base", device=dev)
for s in get_set("photos", "test"):
    x = array_to_tensor(s.image)
    data = bitstream.encode(cpu, x)
    t = time.perf_counter(); a = bitstream.decode(cpu, data); tc = time.perf_counter() - t
    t = time.perf_counter(); b = bitstream.decode(gpu, data).cpu(); tg = time.perf_counter() - t
    d = (a * 255).round().sub((b * 255).round()).abs().max().item()
    same = bitstream.encode(gpu, x.to(dev)) == data
    print(f"{s.name}: {x.shape[2]}x{x.shape[3]} decode cpu {tc:.2f}s gpu {tg:.2f}s, max |Δ| "
          f"{d:.0f} grey levels, GPU-encoded bytes identical: {same}")
PY

log "3. speed benchmarks on $DEVICE"
timeout 120 $PY benchmarks/train_speed.py --device "$DEVICE" --reps 20 --layouts channels-last,contiguous \
  --json "$OUT/train_speed_cuda.json" > /dev/null 2>> "$OUT/session.log"
timeout 120 $PY benchmarks/codec_speed.py --device "$DEVICE" --runs 1 --reps 5 \
  --out "$OUT/codec_speed_cuda.json" >> "$OUT/session.log" 2>&1
log "benchmarks done"

log "4. the long run's stretch on $DEVICE (${STRETCH}s)"
SNAP=results/scaling/$NAME/snapshot
cp "$SNAP/snapshot.json" "$OUT/snapshot-before.json" 2>/dev/null
CHUNK=${CHUNK:-2000} PY=$PY DEVICE=$DEVICE THREADS=4 NICE=0 SCORE=0 NAME=$NAME \
  timeout "$STRETCH" bash scripts/long_run.sh > "$OUT/long-run.log" 2>&1
tail -c 2000 "$OUT/long-run.log" | tr '\r' '\n' | tail -5 | tee -a "$OUT/session.log"

log "5. snapshot back"
cp "$SNAP/model.safetensors" "$SNAP/config.json" "$SNAP/snapshot.json" "$OUT/"
cat "$OUT/snapshot.json" | tee -a "$OUT/session.log"
