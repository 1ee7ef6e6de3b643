#!/usr/bin/env bash
# One prepared call on a lent GPU machine, from the repository root; sized for a 10-minute device budget.
#   0. carried wheels: if .whl/ holds any, they are installed offline into /tmp/site first;
#   1. the GPU-only tests (bf16 numerics, which Triton's CPU interpreter cannot check; the CUDA C scan;
#      the CUDA timers);
#   2. the device's measured ceilings;
#   3. the chosen benchmarks (default: all) at the preset in bf16, accuracy first, into one results file.
# Usage: scripts/gpu_check.sh [--dry-run] [tiny|small|full] [OUT_DIR] [NAMES...]
#   e.g. scripts/gpu_check.sh small "$OUT" attention sae
# --dry-run runs the same steps on the CPU with everything but the GPU launches: the GPU tests are
# collected, not run; ceilings and benchmarks run on the CPU at the tiny preset in fp32, with short
# budgets. CI runs it (tests/test_gpu_check_script.py), so a GPU session never spends minutes on a typo.
set -euo pipefail
dry_run=0
if [ "${1:-}" = "--dry-run" ]; then dry_run=1; shift; fi
size=${1:-small}
out=${2:-results/runs}
shift $(( $# < 2 ? $# : 2 ))
source scripts/source_tree.sh
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

if compgen -G ".whl/*.whl" >/dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

if [ "$dry_run" = 1 ]; then
  tests=(--collect-only) device=(--device cpu) dtypes=(--dtype fp32) size=tiny
  budget=(--warmup 0.01 --budget 0.02 --min-reps 1 --max-reps 3 --seeds 1)
else
  tests=() device=() dtypes=(--dtype bf16)
  budget=(--warmup 0.1 --budget 0.3 --max-time 0.3 --seeds 2)  # --max-noise: its GPU default, at most the old time
fi
mkdir -p "$out"
"$python" -P -m pytest -q -m gpu "${tests[@]}" tests/  # -P: the checkout stays off sys.path
"$python" -m menagerie.harness.cli env "${device[@]}" "${dtypes[@]}"
"$python" -m menagerie.harness.cli run "$@" "${device[@]}" --size "$size" "${dtypes[@]}" "${budget[@]}" \
  --out "$out/$size-${dtypes[1]}.json"
