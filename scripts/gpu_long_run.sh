#!/usr/bin/env bash
# Step 3 on a machine with a GPU: continue the long run (scripts/long_run.sh) there, from its
# snapshot in results/scaling/$NAME/snapshot (committed) or its checkpoints in runs/$NAME,
# whichever is further along. It stops on its own after SECONDS_MAX seconds (default: never;
# stop it with kill), checkpoint and snapshot written every 500 steps.
# Environment: NAME (default mbt64-mse), SECONDS_MAX, CHUNK (steps between scores, default
# 2000), SCORE=0 to skip scoring the snapshot on Kodak (needs ICMBRIDGE_DATA), DEVICE, THREADS,
# PY; the rest as in scripts/long_run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs
export NAME=${NAME:-mbt64-mse} DEVICE=${DEVICE:-cuda} THREADS=${THREADS:-4} NICE=${NICE:-0}
export CHUNK=${CHUNK:-2000} PY=${PY:-.venv/bin/python}
if [ -n "${SECONDS_MAX:-}" ]; then
  timeout "$SECONDS_MAX" bash scripts/long_run.sh || [ $? -eq 124 ]
else
  bash scripts/long_run.sh
fi
