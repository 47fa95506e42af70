#!/usr/bin/env bash
# Run HERE before lending a GPU machine its time: fetch the Python 3.12 wheels that its image
# lacks (it has torch, torchvision, numpy, scipy, safetensors, tqdm, jinja2, matplotlib,
# scikit-image, but no compressai or pytorch-msssim) into .whl/ (ignored by git), to be carried.
# Then, with the device tool:  run(command="bash scripts/gpu_session.sh", carry=[".whl"],
# timeout_s=560)  — and copy what comes back with scripts/gpu_collect.sh FILES_AT.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d .whl compressai==1.2.8 pytorch-msssim==1.0.0
ls -la .whl
