#!/usr/bin/env bash
# There (the lent GPU machine, no network): install the carried wheels, say what runs, run the GPU
# check with a limit that leaves its partial rows in the log. Prepare with bench/device_wheels.sh, then
# call the device tool with command `bash bench/gpu_check_device.sh`, carry [".whl"], timeout_s 540.
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${OUT:-/tmp}/gpu_check.log
PYTHON=${PYTHON:-python3}  # the image's python3 holds its CUDA torch
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$LOG"
"$PYTHON" -c "import torch, triton, transformers, disentangled_flash as d; print('torch', torch.__version__, '| triton', triton.__version__, '| transformers', transformers.__version__, '| disentangled-flash', d.__version__)" 2>&1 | tee -a "$LOG"
timeout "${LIMIT:-480}" "$PYTHON" bench/gpu_check.py "$@" 2>&1 | tee -a "$LOG"
