# make demo  : set up .venv, train 3 seeds on the sample data (CPU, offline), infer, print the submission
# make test  : set up .venv and run the test suite
PY ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# A CPU build where one lies on disk; GPU users: make TORCH=torch (or install torch yourself first).
TORCH ?= torch==2.13.0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "$(TORCH)"
	$(PYTHON) -m pip install -q -r requirements-dev.txt
	touch $@

demo: venv
	rm -rf runs/demo
	$(PYTHON) train.py --config configs/demo.yaml
	$(PYTHON) infer.py --models runs/demo/models --test data/sample/test.csv --out runs/demo/submission.csv

test: venv
	$(PYTHON) -m pytest -q

clean:
	rm -rf runs $(VENV)
