#!/usr/bin/env bash
# Step 4, back on your own machine: bring the GPU machine's long-run snapshot and check results
# here, so that the next scripts/long_run.sh (or a commit) goes on from them.
#   scripts/gpu_collect.sh FROM     FROM: that machine's copy of this repository: a local path
#                                   (a mount, or a copy you fetched) or, with rsync installed,
#                                   an ssh address (user@gpu-host:icmbridge)
# Environment: NAME (default mbt64-mse). Full checkpoints (runs/NAME, with Adam's moments) are
# copied too when RUNS=1.
set -euo pipefail
cd "$(dirname "$0")/.."
FROM=${1:?usage: scripts/gpu_collect.sh FROM (the GPU machine repository copy)}
NAME=${NAME:-mbt64-mse}
copy() {  # copy FOLDER/ into FOLDER here (rsync when there is one: remote FROM works too)
  mkdir -p "$2"
  if command -v rsync > /dev/null; then rsync -a "$1/" "$2/"; else cp -a "$1/." "$2/"; fi
}
copy "$FROM/results/scaling/$NAME" "results/scaling/$NAME"
copy "$FROM/results/gpu" results/gpu 2> /dev/null || true
[ "${RUNS:-0}" = 0 ] || copy "$FROM/runs/$NAME" "runs/$NAME"
SNAP=results/scaling/$NAME/snapshot/snapshot.json
step=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["loop"]["step"])' "$SNAP")
echo "snapshot now at step $step"
