#!/usr/bin/env bash
# Run HERE after scripts/gpu_session.sh: put the snapshot that came back (FILES_AT, the folder
# the device tool names) in place, so that the next scripts/long_run.sh goes on from it.
set -euo pipefail
cd "$(dirname "$0")/.."
FROM=${1:?usage: scripts/gpu_collect.sh FILES_AT}
SNAP=results/scaling/${NAME:-mbt64-mse}/snapshot
mkdir -p "$SNAP" results/scaling/gpu
cp "$FROM/model.safetensors" "$FROM/config.json" "$FROM/snapshot.json" "$SNAP/"
cp "$FROM"/session.log "$FROM"/*_cuda.json results/scaling/gpu/ 2>/dev/null || true
echo "snapshot now at step $(python3 -c "import json; print(json.load(open('$SNAP/snapshot.json'))['loop']['step'])")"
