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

# Container images and the container tier (see docs/cluster.md): a private dockerd under VEGA3D_DOCKER_DIR,
# never the machine's default socket; needs root (dockerd does) and Debian's docker.io + mmdebstrap.
DOCKERD := images/dockerd.sh
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup browser demo test test-fast test-slow test-containers images images-setup push-images lint bench clean

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

# The container tier: both images built (layer cache reused), the tiny pipeline in containers against real
# SeaweedFS and MLflow, the CUDA image's import check. `make test` does not run it (tests/containers needs --containers).
test-containers: setup images-setup
	$(DOCKERD) run bash -c 'images/build.sh cpu cuda && $(PY) -m pytest --containers tests/containers $(PYTEST_ARGS)'

images: images-setup
	$(DOCKERD) run images/build.sh cpu cuda

# Tag and push both images: make push-images VEGA3D_REGISTRY=registry.example.com/team (after `docker login`).
push-images: images-setup
	@test -n "$(VEGA3D_REGISTRY)" || { echo "set VEGA3D_REGISTRY=<registry>/<namespace>"; exit 2; }
	$(DOCKERD) run bash -c 'VEGA3D_REGISTRY=$(VEGA3D_REGISTRY) images/build.sh cpu cuda && \
	  for kind in cpu cuda; do /usr/bin/docker push "$(VEGA3D_REGISTRY)/vega3d-$$kind:$$(sed -n "s/^version = \"\(.*\)\"/\1/p" pyproject.toml)"; done'

images-setup:
	@if [ ! -x /usr/sbin/dockerd ] || [ ! -x /usr/bin/docker ] || ! command -v mmdebstrap >/dev/null; then \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q docker.io mmdebstrap; fi

lint: setup
	$(VENV)/bin/ruff check vega3d components pipelines tests benchmarks

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf .demo .pytest_cache .ruff_cache build dist *.egg-info images/wheels
