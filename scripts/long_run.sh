#!/usr/bin/env bash
# The run that accumulates: MSE-first training of the next base codec, resumed in every session.
#
#   nohup scripts/long_run.sh > runs/long-run.log 2>&1 &     # niced; stop it with kill
#
# It trains in chunks of CHUNK steps (one thread, nice 10) and after each chunk scores the
# snapshot on Kodak (scripts/scaling_point.py), appending to the scaling curve. The full
# checkpoints (with Adam's moments: exact resume) stay in runs/ on this machine; the weights-only
# snapshot in results/scaling/$NAME/snapshot is what a commit carries to the next machine, where
# --resume goes on from it. Environment: NAME, CHUNK, THREADS, ICMBRIDGE_DATA, DEVICE.
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${NAME:-mbt64-mse}
CHUNK=${CHUNK:-1500}
THREADS=${THREADS:-1}
DEVICE=${DEVICE:-cpu}
export ICMBRIDGE_DATA=${ICMBRIDGE_DATA:-../shared/data}
RUN=runs/$NAME
SNAP=results/scaling/$NAME/snapshot
CURVE=results/scaling/$NAME/curve.jsonl
BIN=${BIN:-.venv/bin}
mkdir -p runs "results/scaling/$NAME"

# The run's settings (used on its first start only; a resume reads them back).
SETTINGS=(--arch mbt2018-mean --codec cpu --task none --lambda-task 0 --lambda-mse 0.0018
  --data bsds:trainval --batch-size 8 --crop 128 --lr 2e-4 --warmup 200 --lr-schedule constant
  --steps 10000000 --checkpoint-every 500 --no-tensorboard)

step_of() {  # the step the run (or its snapshot) has reached
  "$BIN/python" - "$RUN" "$SNAP" <<'PY'
import json, sys
from pathlib import Path
from icmbridge.train.runtime import Checkpoints
import torch
last = Checkpoints(Path(sys.argv[1])).last
if last is not None:
    print(torch.load(last / "training_state.pt", weights_only=True)["loop"]["step"])
elif (Path(sys.argv[2]) / "snapshot.json").is_file():
    print(json.loads((Path(sys.argv[2]) / "snapshot.json").read_text())["loop"]["step"])
else:
    print(0)
PY
}

while true; do
  step=$(step_of)
  next=$(( (step / CHUNK + 1) * CHUNK ))
  if [ "$step" -eq 0 ] && [ ! -f "$RUN/run.json" ]; then
    nice -n 10 "$BIN/icmbridge" train --out "$RUN" --snapshot "$SNAP" "${SETTINGS[@]}" \
      --threads "$THREADS" --device "$DEVICE" --stop-at "$next"
  else
    nice -n 10 "$BIN/icmbridge" train --out "$RUN" --snapshot "$SNAP" --resume \
      --threads "$THREADS" --device "$DEVICE" --stop-at "$next"
  fi
  nice -n 10 "$BIN/python" scripts/scaling_point.py "$SNAP" --log "$CURVE" --threads "$THREADS"
done
