#!/usr/bin/env bash
# The face family, re-made on top of the long run's MSE base (issue 22, item 5).
#
#   scripts/reship_faces.sh fork       # copy the long run's snapshot FORK (its step is recorded)
#   scripts/reship_faces.sh task       # the task stage, two weightings side by side (1 thread each)
#   scripts/reship_faces.sh validate   # score both on validation layouts, next to AVIF
#   VARIANT=a|b scripts/reship_faces.sh ship   # export the chosen stage, rate points, decoders
#   scripts/reship_faces.sh tables     # the card's tables and curves (scripts/shipped_tables.sh)
#
# Every stage checkpoints and is resumed by running the same step again. The settings are the
# face family's recipe (weights/base.md) with the first stage replaced by the long run: the
# task stage starts from its MSE snapshot instead of a 20,000-step task-aware stage. FORK is the
# long run's decayed stage-2 fork, as the shipped (fourth) family (the third stood on the
# 16,000-step snapshot of commit 7e434c9, R=runs/f3; its card is in git at 0bec765); the decoders
# for people are finetune's default recipe (`human`) and the paper's (`human-li`,
# `human-control`), as in the card.
# Validation layouts: planted faces on the training photos with another seed
# (`bsdsfaces:train?seed=1`): new face positions and pairings, but the same photo and face pools
# as the training data; nothing of Kodak, BSDS500 test or WIDER is looked at before the choice.
set -euo pipefail
cd "$(dirname "$0")/.."
export ICMBRIDGE_DATA=${ICMBRIDGE_DATA:-../shared/data}
IC=${IC:-.venv/bin/icmbridge}
R=${R:-runs/f4}
FORK=${FORK:-results/scaling/mbt64-mse-s2-decay/snapshot}
D=bsdsfaces:train,bsds:trainval,photos
VAL='bsdsfaces:train?seed=1,n_images=100'
mkdir -p "$R"

# The two weightings of the task stage: the family's ICM stage (task-dominant) and a balanced one.
weights_of() {
  case $1 in
    a) echo "--lambda-task 20 --lambda-mse 0.004" ;;
    b) echo "--lambda-task 5 --lambda-mse 0.01" ;;
    *) echo "unknown variant $1" >&2; exit 2 ;;
  esac
}

# shellcheck source=scripts/stage.sh
source scripts/stage.sh
train() { stage train "$@"; }
finetune() { stage finetune "$@"; }

case ${1:?"usage: $0 fork|task|validate|ship|tables"} in
  fork)
    rm -rf "$R/fork" && cp -r "$FORK" "$R/fork"
    python3 -c "import json; print('forked at step', json.load(open('$R/fork/snapshot.json'))['loop']['step'])"
    ;;
  task)
    for v in a b; do
      # shellcheck disable=SC2046
      train "$R/task-$v" --init "$R/fork" --data "$D" --task face $(weights_of $v) \
        --target-bpp 0.2 --lr 2e-4 --warmup 50 --steps 1500 --checkpoint-every 250 \
        > "$R/task-$v.log" 2>&1 &
    done
    wait
    ;;
  validate)
    for v in a b; do
      "$IC" compare --base "$R/task-$v" --decoders '' --codecs avif --set "$VAL" --task face \
        --no-people-metrics --threads 1 -o "$R/val-$v" > "$R/val-$v.log" 2>&1 &
    done
    wait
    cat "$R"/val-?/table.md
    ;;
  ship)
    v=${VARIANT:?set VARIANT=a or b}
    w=$(weights_of "$v")
    "$IC" export "$R/task-$v" -o weights/base --note "face ICM base on the long run's MSE base; see weights/base.md"
    # Two lanes on the two cores: the rate points (the family's settings: lower lr and target for
    # low) and the decoders for people: `human` with finetune's default recipe (all of g_s,
    # MSE + 0.2·(1 − MS-SSIM), cached ŷ, 900 steps, on BSDS500 photos the choices were not made
    # on; chosen on the other 30 val photos, weights/base.md), the paper's decoders (layers
    # first:2, 600 steps, on the base's training data).
    H='bsds:train,bsds:val?take=0:70'
    F=(--base weights/base --data "$D" --steps 600 --checkpoint-every 150)
    P=(--preset paper --patch-size 64 --crop 128 --batch-size 8)
    (
      # shellcheck disable=SC2086
      train "$R/rate-low" --init weights/base --data "$D" --task face $w --target-bpp 0.12 \
        --lr 1e-4 --warmup 50 --steps 800 --checkpoint-every 200 > "$R/rate-low.log" 2>&1
      "$IC" export "$R/rate-low" -o weights/base-low --note "face family, low rate point; see weights/base.md"
      finetune "$R/human" --base weights/base --data "$H" --checkpoint-every 300 > "$R/human.log" 2>&1
      finetune "$R/human-li" "${F[@]}" --preset li > "$R/human-li.log" 2>&1
    ) &
    (
      # shellcheck disable=SC2086
      train "$R/rate-high" --init weights/base --data "$D" --task face $w --target-bpp 0.45 \
        --lr 3e-4 --warmup 50 --steps 1000 --checkpoint-every 200 > "$R/rate-high.log" 2>&1
      "$IC" export "$R/rate-high" -o weights/base-high --note "face family, high rate point; see weights/base.md"
      finetune "$R/human-control" "${F[@]}" "${P[@]}" --lambda-a 0 > "$R/human-control.log" 2>&1
    ) &
    wait
    for d in human human-li human-control; do
      "$IC" export "$R/$d" -o "weights/$d" --note "face family decoder for people; see weights/base.md"
    done
    ;;
  tables)  # every table and rate curve of the card, in two lanes of one thread (~45 min here)
    C=(--codecs jpeg,avif --threads 1)
    export FACE_TASKS=${FACE_TASKS:-face}  # MTCNN, the family's detector (CenterFace: FACE_TASKS)
    (
      THREADS=1 scripts/shipped_tables.sh kodak bsds coco gan
      "$IC" curves --models base-low,base,base-high "${C[@]}" --set kodak --task none \
        -o results/faces/curves/kodak
    ) > "$R/tables-1.log" 2>&1 &
    (
      THREADS=1 scripts/shipped_tables.sh wider bsdsfaces
      # issue 27's people targets on BSDS500 test too: `human` and AVIF with ColorVideoVDP and
      # SSIMULACRA 2 (all decoders with them there would double this lane)
      "$IC" compare --base base --decoders human --codecs avif --set bsds:test --task none \
        --threads 1 -o results/faces/tables/bsds-test-people
      "$IC" curves --models base-low,base,base-high "${C[@]}" --set bsdsfaces:test --task face \
        --no-people-metrics -o results/faces/curves/bsdsfaces
    ) > "$R/tables-2.log" 2>&1 &
    wait
    ;;
  *) echo "usage: $0 fork|task|validate|ship|tables" >&2; exit 2 ;;
esac
