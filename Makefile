# Two commands do everything on a fresh machine:  `make demo`  and  `make test`.
# Each creates the virtual environment (.venv) when it is missing.
# The first of these that runs as Python 3.11 or newer (pyenv's shims exist for versions not selected);
# `make PYTHON=/path/to/python` picks another.
PYTHON ?= $(or $(shell for p in python3.11 python3.12 python3.13 python3; do \
  $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo $$p; break; }; done),python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch/torchvision are pinned and installed first: a bare `torch` requirement on a machine without
# torch would pull a multi-GB CUDA build. GPU users may pre-install their own torch instead.
TORCH  ?= torch==2.14.1 torchvision==0.29.1

export HF_HUB_OFFLINE ?= 1

.PHONY: setup demo test test-all lint clean chromium

# The stamp is written last: an interrupted set-up has none, and the next run carries on.
# The venv is (re)made unless it has pip and Python 3.11+: an interrupted `python -m venv`, or one
# where ensurepip is missing (Debian's python3 without python3-venv), leaves bin/python without pip.
# TORCH goes only into a venv without torch: the torch chosen at the first set-up (a CUDA build by
# TORCH=...) stays when a changed pyproject.toml reruns this.
$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || \
	  { echo "videolift needs Python 3.11 or newer; '$(PYTHON)' is missing or older: make PYTHON=/path/to/python3.11"; exit 1; }
	$(BIN)/python -c 'import sys, pip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || \
	  $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c 'from importlib.metadata import version; version("torch"); version("torchvision")' 2>/dev/null || \
	  $(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

# The annotation app's browser test drives Debian's Chromium (never a downloaded browser build).
# Installed when missing and we may (root + apt-get); otherwise that one test is skipped.
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian chromium for the browser test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "chromium could not be installed: the browser test will be skipped"; \
	else echo "no /usr/bin/chromium: the browser test will be skipped"; fi

# The main job: the toy world end to end (videolift demo; results in demo-out/).
demo: setup
	$(BIN)/videolift demo --out demo-out

test: setup chromium
	$(BIN)/ruff check
	$(BIN)/pytest -q -m "not slow" --durations=10

test-all: setup chromium
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check
	$(BIN)/ruff format --check

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
