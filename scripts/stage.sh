# Sourced by the reship_*.sh scripts: one training stage that starts, or resumes where it stopped.
# Needs IC (the icmbridge executable).

stage() {  # stage train|finetune OUT ARGS...: start, or resume if OUT has checkpoints
  local cmd=$1 out=$2; shift 2
  if [ -d "$out/checkpoints/last" ]; then
    nice -n 5 "$IC" "$cmd" --out "$out" --resume --threads 1
  else
    nice -n 5 "$IC" "$cmd" --out "$out" --threads 1 --no-tensorboard "$@"
  fi
}
