#!/usr/bin/env bash
# Do our exported checkpoints load and score the same under Kaggle's image (transformers 5.0.0,
# tokenizers 0.22) as under the transformers we train with? Prints a table and PASS/FAIL.
#
#   bash bench/compat_transformers5.sh
#
# Builds a separate venv ($VENV, default /tmp/mcq-tf5) with transformers==5.0.0, tokenizers 0.22.x and
# the same CPU torch as .venv (torch==2.13.0 is a CPU wheel on this machine's disk; an unpinned torch
# would pull a multi-GB CUDA build), exports models with .venv (a tiny DeBERTa-v3-style model built in
# code, fp32 and fp16; MiniLM; runs/demo/models when present), runs mcq.infer.run.run_inference under both
# and compares token ids and logits.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="${PY:-$ROOT/.venv/bin/python}"
VENV="${VENV:-/tmp/mcq-tf5}"
WORK="${WORK:-/tmp/mcq-tf5-work}"
TORCH="${TORCH:-torch==2.13.0}"
TRANSFORMERS="${TRANSFORMERS:-transformers==5.0.0}"
TOKENIZERS="${TOKENIZERS:-tokenizers>=0.22,<0.23}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1

if [ ! -x "$VENV/bin/python" ]; then
  # The same interpreter as .venv, so the local CPU torch wheel fits.
  "$("$PY" -c 'import sys; print(sys._base_executable)')" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q "$TORCH" "$TRANSFORMERS" "$TOKENIZERS" datasets pandas numpy safetensors 2>&1 \
  | { grep -v "^WARNING: Location" || true; }
echo "$VENV: $("$VENV/bin/python" -c 'import transformers, tokenizers; print("transformers", transformers.__version__, "tokenizers", tokenizers.__version__)')"

rm -rf "$WORK"
mkdir -p "$WORK"
DEMO=()
[ -d runs/demo/models ] && DEMO=(--demo runs/demo/models)
"$PY" bench/compat_tf5.py make --work "$WORK" "${DEMO[@]}"
"$PY" bench/compat_tf5.py infer --work "$WORK" --tag current
PYTHONPATH="$ROOT" "$VENV/bin/python" bench/compat_tf5.py infer --work "$WORK" --tag tf5
"$PY" bench/compat_tf5.py compare --work "$WORK" --ref current --new tf5
