# The two set-up commands of the README. Each creates .venv (if needed) and installs what it needs.
#   make demo   -> quickstart: generate the offline data, train a CPU-sized detector, evaluate it
#   make test   -> the default test suite (CPU, no network, no pretrained weights)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch and torchvision are installed together so pip picks a matching pair (see DEVELOPERS.md).
	$(PY) -m pip install torch torchvision
	$(PY) -m pip install -e ".[test,efficientnet,tensorboard]"
	$(PY) -c "import torch, torchvision.ops; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m activedet demo --out runs/quickstart

test: $(STAMP)
	$(PY) -c "import torchvision.ops"
	$(PY) -m pytest -q

clean:
	rm -rf runs $(VENV)
