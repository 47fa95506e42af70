#!/usr/bin/env bash
# D alone against the frozen face `base` (the decoder never moves: --d-warmup, then one step),
# the shipped recipe's D settings but for the normalisation; health on held-out COCO photos.
set -euo pipefail
export ICMBRIDGE_DATA=${ICMBRIDGE_DATA:-/work/shared/data}
D=bsdsfaces:train,bsds:trainval,photos
H='coco128?take=0:32'
for norm in ${NORMS:-batch batch-joint none spectral instance}; do
  nice -n 5 .venv/bin/icmbridge finetune --base base --data $D --threads 1 --no-tensorboard \
    --steps 1 --d-warmup ${WARM:-300} --health-every 50 --health-set "$H" --health-crops 64 \
    --d-norm $norm --out runs/ih/probe-$norm > runs/ih/probe-$norm.log 2>&1
  cp runs/ih/probe-$norm/health.json results/gan-health/probe-$norm.json
done
