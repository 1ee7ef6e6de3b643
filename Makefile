# Entry points, each installing what it needs first:
#   make bench          run the suite on the default device and size preset
#   make test           run the tests
#   make compile-check  build every kernel for sm_80 and sm_90 (no GPU needed) under this Triton, and for sm_90
#                       under Triton 3.6, the lent GPU machines' version (a second venv, .venv-triton36), against
#                       the committed compile record: only units it lacks are compiled, plus a spot check
#   make compile-record the same, writing the record (commit results/compile/ after a kernel change)
# On a machine without an NVIDIA driver torch is pinned to 2.14.1 with torchvision 0.29.1 (the pair that imports
# together there; the test suite passes under it).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
GPU_TRITON_VENV := .venv-triton36
TORCH ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.14.1 torchvision==0.29.1)
ARGS ?=

.PHONY: install ffcv-libs browser slurm bench site-screenshot bench-site lint docs test compile-check compile-record clean

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

# The results site: the docs' screenshot of its index (docs/history-and-site.md) (from results/history/cpu-tiny), and the time of a build
# over a synthetic history of 1,000 runs x 300 rows.
site-screenshot: install browser
	$(BIN)/python scripts/site_screenshot.py

bench-site: install
	$(BIN)/python -m tests.harness.bench_site_build $(ARGS)

# Debian's chromium renders the HTML report in the tests. Installed only when missing, and only from a
# root shell with apt-get; elsewhere that test is skipped with its reason. A failed install stops CI (CI set).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
	      || { echo "could not install chromium with apt-get"; [ -z "$$CI" ]; }; \
	  else echo "chromium not installed (needs root and apt-get): the HTML render test will be skipped"; fi; }

# A one-node SLURM cluster for the cluster tests (tests/harness/slurm_cluster.py starts it in a temporary folder):
# Debian's slurmctld, slurmd and munge, installed only when missing and only from a root shell with apt-get;
# elsewhere those tests are skipped with their reason. A failed install stops CI (CI set).
slurm:
	@command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 && command -v munged >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	        slurmctld slurmd slurm-client munge; } \
	      || { echo "could not install SLURM with apt-get"; [ -z "$$CI" ]; }; \
	  else echo "SLURM not installed (needs root and apt-get): the cluster tests will be skipped"; fi; }

# The documentation into site-docs/ (open site-docs/index.html): offline, warnings (a broken link or reference) as errors.
docs: install
	$(BIN)/sphinx-build -W --keep-going -q -b html docs site-docs

# ruff's lint rules and its formatter ([tool.ruff] in pyproject.toml); `ruff format .` rewrites what --check reports.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# In parallel on every core (pytest-xdist), the 20 slowest tests listed at the end. The console script, not
# `python -m pytest`, which would put the checkout (and its kernels/ folder) first on sys.path.
test: install browser slurm
	$(BIN)/pytest -q -n auto --durations=20 $(ARGS)

# The GPU machines' Triton (3.6) beside the CPU torch, and only the core's dependencies (no jsonschema, as there).
$(GPU_TRITON_VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(GPU_TRITON_VENV)
	$(GPU_TRITON_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(GPU_TRITON_VENV)/bin/python -m pip install --quiet torch==2.13.0 triton==3.6.0 nvidia-cuda-nvrtc numpy scipy rich pillow
	$(GPU_TRITON_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

# The compile check is incremental: units (kernel specialization x configuration x arch) whose fingerprint is in the
# committed record (results/compile/<triton version>/<arch>.json) are replayed, a spot check of them is compiled again,
# and only new units are compiled. compile-check (CI) fails when the tree has units the record lacks; compile-record
# compiles what is new and writes the records (add ARGS=--full to rebuild every unit); commit results/compile/ after it.
# Triton 3.6 builds for sm_90 only, the lent machines' GPUs (H100/H200), beside the 3.8 check: its output is held in a
# file and printed after the first check's, so the two tables do not interleave.
compile-check: RECORD_MODE = --frozen
compile-record: RECORD_MODE = --update
compile-check compile-record: install $(GPU_TRITON_VENV)/.installed
	@mkdir -p results/compile
	@start=$$(date +%s); \
	{ $(GPU_TRITON_VENV)/bin/menagerie compile --arch sm_90 $(RECORD_MODE) $(ARGS); status=$$?; \
	  echo "--- Triton 3.6 check (sm_90) took $$(( $$(date +%s) - start )) s, exit $$status"; exit $$status; } \
	  > results/compile/triton36.log 2>&1 & gpu=$$!; \
	$(BIN)/menagerie compile --arch sm_80,sm_90 $(RECORD_MODE) $(ARGS); current=$$?; \
	echo "--- Triton $$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("triton"))') check (sm_80, sm_90) took $$(( $$(date +%s) - start )) s, exit $$current"; \
	wait $$gpu; gpu_status=$$?; \
	echo "--- Triton 3.6 (.venv-triton36), sm_90:"; cat results/compile/triton36.log; \
	[ $$current = 0 ] && [ $$gpu_status = 0 ]

clean:
	rm -rf $(VENV) $(GPU_TRITON_VENV) .pytest_cache .benchmarks
