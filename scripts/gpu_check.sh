#!/usr/bin/env bash
# One call on a GPU machine, from the repository root, installing nothing:
#   1. the GPU-only tests (bf16 numerics, which Triton's CPU interpreter cannot check;
#      the CUDA C scan; the CUDA timers),
#   2. the device's measured ceilings,
#   3. the chosen benchmarks (default: all) at the preset in bf16, accuracy first, into one results file.
# Usage: scripts/gpu_check.sh [tiny|small|full] [OUT_DIR] [NAMES...]   e.g. scripts/gpu_check.sh full results/runs sae
set -euo pipefail
size=${1:-small}
out=${2:-results/runs}
shift $(( $# < 2 ? $# : 2 ))
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python -m pytest -q -m gpu tests/
python -m harness.cli env --dtype bf16 --dtype fp16 --dtype fp32
python -m harness.cli run "$@" --size "$size" --dtype bf16 --out "$out/$size-bf16.json"
