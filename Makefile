# Two entry points, each installing what it needs into .venv first:
#   make bench   run the suite on the default device and size preset
#   make test    run the tests
# On a machine without an NVIDIA driver torch is pinned to 2.14.1 with torchvision 0.29.1 (the pair that imports
# together there; the test suite passes under it).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.14.1 torchvision==0.29.1)
ARGS ?=

.PHONY: install ffcv-libs browser bench test clean

$(VENV)/.installed: pyproject.toml Makefile | ffcv-libs
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

# FFCV (a test dependency) compiles against libjpeg-turbo and OpenCV, found through pkg-config: installed with
# apt-get when missing, from a root shell only; elsewhere the install stops and says what to install.
ffcv-libs:
	@pkg-config --exists libturbojpeg opencv4 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libturbojpeg0-dev libopencv-dev pkg-config; \
	  else echo "FFCV needs libturbojpeg0-dev, libopencv-dev and pkg-config: install them as root (apt-get)"; exit 1; fi; }

bench: install
	$(BIN)/menagerie run $(ARGS)

# Debian's chromium renders the HTML report in the tests. Installed only when missing, and only from a
# root shell with apt-get; elsewhere that test is skipped with its reason. A failed install stops CI (CI set).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
	      || { echo "could not install chromium with apt-get"; [ -z "$$CI" ]; }; \
	  else echo "chromium not installed (needs root and apt-get): the HTML render test will be skipped"; fi; }

test: install browser
	$(BIN)/python -m pytest -q $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
