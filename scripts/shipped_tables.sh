#!/usr/bin/env bash
# The README's tables: the shipped decoders (base, human, human-li and the λ_a = 0 control
# human-control) on one set of bitstreams per image set, classical codecs at each image's bytes,
# every mean with its 95 % interval and every difference to base paired. Needs the public data
# (Kodak, BSDS500, coco128, WIDER FACE, YOLOX-Nano): ICMBRIDGE_DATA, default ../shared/data.
#
#   scripts/shipped_tables.sh            # all tables into results/faces/tables/
#   scripts/shipped_tables.sh kodak      # one of: kodak bsds coco wider bsdsfaces gan
#   PEOPLE=all scripts/shipped_tables.sh # ColorVideoVDP / SSIMULACRA 2 on every set, not Kodak only
#   FACE_TASKS=face scripts/shipped_tables.sh wider  # MTCNN only (default: face centerface)
#   THREADS=1 scripts/shipped_tables.sh kodak bsds &  THREADS=1 scripts/shipped_tables.sh coco &
#   BASE=coco-base DECODERS=coco-human,coco-human-li,coco-human-control \
#     COCO_SET='coco128?take=32:' OUT=results/tables-coco scripts/shipped_tables.sh kodak bsds coco
#     (the COCO base's settings were chosen on coco128?take=0:32, so it is scored on the rest)
set -euo pipefail
cd "$(dirname "$0")/.."
export ICMBRIDGE_DATA=${ICMBRIDGE_DATA:-../shared/data}
IC=${IC:-.venv/bin/icmbridge}
OUT=${OUT:-results/faces/tables}
BASE=${BASE:-base}
DECODERS=${DECODERS:-human,human-li,human-control}
CONTROL=${CONTROL:-${DECODERS##*,}}  # the λ_a = 0 control: the last decoder
COCO_SET=${COCO_SET:-coco128}
YOLOX="$ICMBRIDGE_DATA/weights/yolox-nano/yolox_nano.onnx"
THREADS=${THREADS:-}  # torch threads per compare (empty: torch's default)
# ColorVideoVDP and SSIMULACRA 2 (1–2 s an image and codec) on Kodak only, unless PEOPLE=all
NOP=$([ "${PEOPLE:-kodak}" = all ] || echo --no-people-metrics)
FACE_TASKS=${FACE_TASKS:-face centerface}  # the face detectors of the WIDER and planted-face tables
detector() { [ "$1" = face ] && echo mtcnn || echo "$1"; }  # task → table name
run() {
  echo "== $*" >&2
  /usr/bin/time -f "%e s" "$IC" compare --base "$BASE" --decoders "$DECODERS" \
    ${THREADS:+--threads "$THREADS"} "$@"
}

sets=("$@")
pick() { [[ ${#sets[@]} -eq 0 ]] || [[ " ${sets[*]} " == *" $1 "* ]]; }

if pick kodak; then
  run --set kodak --task none --codecs jpeg,webp,avif,heif -o "$OUT/kodak"
fi
if pick bsds; then
  run --set bsds:test --task none --codecs jpeg,avif $NOP -o "$OUT/bsds-test"
fi
if pick coco; then
  run --set "$COCO_SET" --task yolox --task-weights "$YOLOX" --codecs jpeg,avif $NOP -o "$OUT/coco128-yolox"
fi
if pick wider; then
  for t in $FACE_TASKS; do
    run --set widerface --task "$t" --codecs jpeg,avif $NOP -o "$OUT/wider-$(detector "$t")"
  done
fi
if pick bsdsfaces; then
  for t in $FACE_TASKS; do
    run --set bsdsfaces:test --task "$t" --codecs jpeg,avif $NOP -o "$OUT/bsdsfaces-$(detector "$t")"
  done
fi
if pick gan; then  # the first decoder paired with the λ_a = 0 control (first two layers, MSE)
  for s in kodak bsds:test; do
    people=$([ "$s" = kodak ] || echo "$NOP")
    DECODERS="${DECODERS%%,*},$CONTROL" run --set "$s" --task none --codecs '' $people \
      --reference "$CONTROL" -o "$OUT/gan-vs-control-${s%%:*}"
  done
fi
