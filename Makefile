# Two entry points, each installing what it needs into .venv first:
#   make bench   run the suite on the default device and size preset
#   make test    run the tests
# On a machine without an NVIDIA driver the CPU build of torch is installed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)
ARGS ?=

.PHONY: install bench test clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

bench: install
	$(BIN)/menagerie run $(ARGS)

test: install
	$(BIN)/python -m pytest -q $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
