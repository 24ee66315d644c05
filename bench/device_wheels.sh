#!/usr/bin/env bash
# Here (with PyPI): fetch the wheels bench/gpu_check.py needs on the lent GPU machine, whose image has
# torch 2.11 (CUDA 13), triton, tokenizers 0.23 and huggingface_hub but transformers 5.17 (we need >= 5.24)
# and no disentangled-flash (nor, perhaps, sentence-transformers, for the dense rows). Pure-Python wheels,
# ~15 MB: carry `.whl` in the device call.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
rm -rf .whl && mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl transformers==5.24.0 disentangled-flash==1.1.1 sentence-transformers==6.3.0
ls -la .whl
