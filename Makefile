# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH_CPU ?= torch==2.13.0

.PHONY: setup demo test lint gpu-check clean

setup: $(VENV)/.installed

# --system-site-packages keeps a torch the machine already has (a GPU user's CUDA build);
# only when none imports do we install the pinned CPU build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_CPU)"
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: setup
	$(VENV)/bin/perfmodel demo

test: setup
	$(PY) -m pytest -q -n 2 --durations=10

# ruff, configured in pyproject.toml ([tool.ruff]); installed by the test extra
lint: setup
	$(VENV)/bin/ruff check .

# On a CUDA machine: calibrate --gpu --quick, validate mlp/wordlm/transformer on it, pytest -m cuda;
# figures in reports/gpu-check.json, under 8 minutes.  Without CUDA: one line, exit 0.
gpu-check: setup
	$(PY) tools/gpu_check.py

clean:
	rm -rf $(VENV) reports/*.html reports/*.png
