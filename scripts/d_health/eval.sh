#!/usr/bin/env bash
# Score the issue-23 decoders on base's bitstreams: tuning set (32 COCO photos the face family
# never saw) or a report set; paired differences and the realism measure with paired.py.
#   scripts/d_health/eval.sh tune|kodak|bsds DECODERS PAIRS...
set -euo pipefail
export ICMBRIDGE_DATA=${ICMBRIDGE_DATA:-/work/shared/data}
NAME=$1
case "$1" in
  tune) SET='coco128?take=0:32' ;;
  kodak) SET=kodak ;;
  bsds) SET='bsds:test' ;;
esac
OUT=runs/ih/eval-$NAME
nice -n 5 .venv/bin/icmbridge compare --base base --decoders "$2" --codecs '' --set "$SET" \
  --task none --reference human-control --threads 1 -o $OUT
mkdir -p results/gan-health/eval-$NAME
cp $OUT/results.json $OUT/table.md results/gan-health/eval-$NAME/
shift 2
.venv/bin/python scripts/d_health/paired.py $OUT "$@" | tee results/gan-health/eval-$NAME/paired.md
