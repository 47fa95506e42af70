#!/usr/bin/env bash
# The run that accumulates: MSE-first training of the next base codec, resumed in every session.
#
#   nohup scripts/long_run.sh > runs/long-run.log 2>&1 &     # niced; stop it with kill
#
# It trains in chunks (to step 500, 1000, 2000, 4000, then every CHUNK steps; one thread, nice
# 10) and after each chunk scores the snapshot on Kodak (scripts/scaling_point.py), appending
# to the scaling curve. The full
# checkpoints (with Adam's moments: exact resume) stay in runs/ on this machine; the weights-only
# snapshot in results/scaling/$NAME/snapshot is what a commit carries to the next machine, where
# --resume goes on from it (or from whichever of the two is further along). Environment: NAME,
# CHUNK, THREADS, DEVICE, ICMBRIDGE_DATA, PY (the Python with icmbridge), NICE, PEOPLE=0 to score
# without ColorVideoVDP / SSIMULACRA 2.
#
# A new *stage* (the run plateaued: a lower learning rate, other crops) is a new NAME started
# from an earlier stage's snapshot: INIT=results/scaling/OLD/snapshot LR=5e-5 NAME=NEW. Its first
# start writes results/scaling/NEW/branch.json (the parent's step and CPU-hours), so its points
# sit at the parent's hours plus its own; later starts resume it like any run. LR, CROP and
# BATCH apply to a first start only (a resume reads the run's own settings back).
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${NAME:-mbt64-mse}
CHUNK=${CHUNK:-4000}
THREADS=${THREADS:-1}
DEVICE=${DEVICE:-cpu}
export ICMBRIDGE_DATA=${ICMBRIDGE_DATA:-../shared/data}
RUN=runs/$NAME
SNAP=results/scaling/$NAME/snapshot
CURVE=results/scaling/$NAME/curve.jsonl
PY=${PY:-.venv/bin/python}
NICE=${NICE:-10}
PEOPLE_FLAG=$([ "${PEOPLE:-1}" = 0 ] && echo --no-people || true)
mkdir -p runs "results/scaling/$NAME"

# The run's settings (used on its first start only; a resume reads them back).
SETTINGS=(--arch mbt2018-mean --codec cpu --task none --lambda-task 0 --lambda-mse 0.0018
  --data bsds:trainval --batch-size "${BATCH:-8}" --crop "${CROP:-128}" --lr "${LR:-2e-4}"
  --warmup 200 --lr-schedule constant --steps 10000000 --checkpoint-every 500 --no-tensorboard)
if [ -n "${INIT:-}" ]; then
  SETTINGS+=(--init "$INIT")
  [ -f "results/scaling/$NAME/branch.json" ] || "$PY" - "$INIT" "$NAME" "${SETTINGS[*]}" <<'PY'
import json, sys
from pathlib import Path
from icmbridge.train.runtime import read_branch, read_snapshot
init, name, settings = sys.argv[1:]
loop = read_snapshot(Path(init))["loop"]
hours = loop["cpu_seconds"] / 3600 + read_branch(Path(init)).get("parent_cpu_hours", 0.0)
record = {"fork_of": init, "branch": name, "parent_step": loop["step"],
          "parent_cpu_hours": round(hours, 4), "command": f"icmbridge train {settings}"}
Path(f"results/scaling/{name}/branch.json").write_text(json.dumps(record, indent=2) + "\n")
PY
fi

step_of() {  # the step the run (or its snapshot) has reached
  "$PY" - "$RUN" "$SNAP" <<'PY'
import json, sys
from pathlib import Path
steps = [0]
for cfg in (Path(sys.argv[1]) / "checkpoints" / "last" / "config.json", Path(sys.argv[2]) / "config.json"):
    if cfg.is_file():
        steps.append(json.loads(cfg.read_text())["meta"].get("trained_steps", 0))
print(max(steps))
PY
}

while true; do
  step=$(step_of)
  # scored at 500, 1000, 2000, 4000 steps (a log-spaced start of the curve), then every CHUNK
  next=500
  while [ "$next" -le "$step" ] && [ "$next" -lt "$CHUNK" ]; do next=$((next * 2)); done
  [ "$next" -gt "$step" ] || next=$(( (step / CHUNK + 1) * CHUNK ))
  if [ "$step" -eq 0 ] && [ ! -f "$RUN/run.json" ] && [ ! -f "$SNAP/snapshot.json" ]; then
    nice -n "$NICE" "$PY" -m icmbridge.cli train --out "$RUN" --snapshot "$SNAP" "${SETTINGS[@]}" \
      --threads "$THREADS" --device "$DEVICE" --stop-at "$next"
  else
    nice -n "$NICE" "$PY" -m icmbridge.cli train --out "$RUN" --snapshot "$SNAP" --resume \
      --threads "$THREADS" --device "$DEVICE" --stop-at "$next"
  fi
  [ "${SCORE:-1}" = 0 ] || nice -n "$NICE" "$PY" scripts/scaling_point.py "$SNAP" --log "$CURVE" \
    --threads "$THREADS" $PEOPLE_FLAG
done
