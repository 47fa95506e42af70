#!/usr/bin/env bash
# The issue-23 runs on the face `base` (its shipped finetuning data and schedule shape, one
# thread, niced). Each adversarial run starts as a "probe": D warmed up alone on the frozen base
# (--d-warmup), one decoder step (--stop-at 1); `finetune --out RUN --resume` then continues it
# to --steps exactly as one uninterrupted run would. Held-out D health: 32 COCO photos
# (coco128?take=0:32), never seen by the face family.
set -euo pipefail
export ICMBRIDGE_DATA=${ICMBRIDGE_DATA:-/work/shared/data}
D=bsdsfaces:train,bsds:trainval,photos
H='coco128?take=0:32'
COMMON="--base base --data $D --threads 1 --steps ${STEPS:-400} --checkpoint-every 100 \
  --health-every 50 --health-set $H --health-crops 64"
ft() { nice -n 5 .venv/bin/icmbridge finetune "$@"; }
case "$1" in
  probe)  # probe NAME NORM LAYERS: warm-up + 1 step, adaptive λ (factor 0.5)
    ft $COMMON --out runs/ih/$2 --d-norm $3 --layers $4 --d-warmup ${WARM:-150} \
      --lambda-a-mode adaptive --lambda-a ${FACTOR:-0.5} --stop-at 1 ;;
  resume) ft --out runs/ih/$2 --resume --steps ${STEPS:-400} --stop-at ${STEPS:-400} ;;
  control)  # control NAME LAYERS: λ_a = 0, same schedule and data
    ft $COMMON --out runs/ih/$2 --layers $3 --lambda-a 0 ;;
esac
