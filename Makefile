# The two set-up commands of the README. Each creates .venv (if needed) and installs what it needs.
#   make demo   -> quickstart: generate the offline data, train a CPU-sized detector, evaluate it
#   make test   -> the default test suite (CPU, no network, no pretrained weights)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test clean chromium

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch and torchvision are installed together so pip picks a matching pair (see DEVELOPERS.md).
	$(PY) -m pip install torch torchvision
	$(PY) -m pip install -e ".[test,efficientnet,tensorboard]"
	$(PY) -c "import torch, torchvision.ops; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m activedet demo --out runs/quickstart

test: $(STAMP) chromium
	$(PY) -c "import torchvision.ops"
	$(PY) -m ruff check activedet tests benchmarks
	$(PY) -m ruff format --check activedet tests benchmarks
	# one worker per core (at most 8): the suite is mostly single-threaded CPU work and subprocesses
	$(PY) -m pytest -q -n auto --maxprocesses 8

# tests/test_html_report.py renders the HTML report in Debian's headless chromium. Installed here when missing
# (needs root and the Debian package registry: ~120 MB, ~15 s); otherwise that one test fails saying how to install it.
chromium:
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y --no-install-recommends chromium) || \
		echo "chromium not installed (needs root and apt-get): tests/test_html_report.py will fail"

clean:
	rm -rf runs $(VENV)
