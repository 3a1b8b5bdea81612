# Two commands do everything on a fresh machine: `make demo` and `make test` (each sets itself up).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch that lies on this project's machines; on a GPU machine set TORCH_SPEC to your own
# (e.g. `make setup TORCH_SPEC=torch`) or install torch into the venv first.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= all,dev
PYTEST_ARGS ?=

export MLFLOW_DISABLE_TELEMETRY := true
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup browser demo test test-fast test-slow lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	@touch $@

# The viewer's browser test (tests/viewer/test_browser.py) drives Debian's chromium headless; installed here when
# apt-get is usable (root), otherwise that test skips and says why.
browser:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium not installed: the viewer's browser test will skip"

demo: setup
	$(VENV)/bin/vega3d demo

test: setup browser
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup browser
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: setup
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check vega3d components pipelines tests benchmarks

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf .demo .pytest_cache .ruff_cache build dist *.egg-info
