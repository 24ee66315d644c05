# make demo      : set up .venv, index the sample passages, train 3 seeds open-book on the sample data (CPU,
#                  offline), infer with retrieved context, print the submission
# make test      : set up .venv, then lint, format check, types and the test suite (what CI runs)
# make lint      : ruff (lint + format check) and mypy on everything: mcq/, bench/, tests/ and the kernel
# make clean     : remove .venv and caches; trained runs in runs/ are kept
# make clean-runs: remove runs/ too (every trained model and runs/kaggle/state.json), after a confirmation
PY ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# A CPU build where one lies on disk; GPU users: make TORCH=torch (or install torch yourself first).
TORCH ?= torch==2.13.0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint pytest venv clean clean-runs

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "$(TORCH)"
	$(PYTHON) -m pip install -q -r requirements-dev.txt
	touch $@

demo: venv
	rm -rf runs/demo runs/demo-index
	$(PYTHON) -m mcq.retrieve build --corpus data/sample/passages.csv --out runs/demo-index
	$(PYTHON) train.py --config configs/demo.yaml
	$(PYTHON) infer.py --models runs/demo/models --test data/sample/test.csv --out runs/demo/submission.csv \
		--index runs/demo-index

lint: venv
	$(VENV)/bin/ruff check mcq train.py infer.py bench tests kernels
	$(VENV)/bin/ruff format --check mcq train.py infer.py bench tests kernels
	$(VENV)/bin/mypy

pytest: venv
	$(PYTHON) -m pytest -q

test: lint pytest

clean:
	rm -rf $(VENV) build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

clean-runs:
	@if [ "$(CONFIRM)" != "yes" ]; then \
		printf "delete runs/ (every trained model and runs/kaggle/state.json)? [y/N] "; read answer; \
		[ "$$answer" = y ] || [ "$$answer" = yes ] || { echo "kept runs/"; exit 1; }; \
	fi
	rm -rf runs
