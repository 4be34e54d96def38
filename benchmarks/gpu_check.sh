#!/usr/bin/env bash
# The GPU check: on a machine with CUDA, one command runs the CUDA tests, the solver overhead against
# torchdiffeq, one sequence-model training iteration against the official-style peer (eager and compiled)
# and one MNIST epoch per model, then prints one summary table (each step's own table is printed above it,
# and kept with its log in $GPU_CHECK_LOGS, default gpu_check_logs/).
#
#   bash benchmarks/gpu_check.sh           # needs CUDA (exit 2 without); ~10 min on one H200
#   bash benchmarks/gpu_check.sh --smoke   # the same steps, tiny, on the CPU: checks the script itself
#
# Data: $MONODE_DATA_DIR, default ../shared/data. MNIST_SUBSET (default 60000) sets the epoch's images.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export MONODE_DATA_DIR=${MONODE_DATA_DIR:-$PWD/../shared/data}
LOGS=${GPU_CHECK_LOGS:-gpu_check_logs}
mkdir -p "$LOGS"

if [ "${1:-}" = "--smoke" ]; then
  DEV=cpu
  OVERHEAD=(--quick)
  SEQ=(--models node,hbnode --peer-models node --repeat 1 --warmup 1 --batch-size 8 --seq-len 8)
  MNIST=(--models node,hbnode --subset 64 --test-subset 64 --epochs 1)
  TESTS=(tests/test_devices.py)
else
  DEV=cuda
  if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: torch.cuda.is_available() is False: run it on a machine with CUDA, or pass --smoke" >&2
    exit 2
  fi
  OVERHEAD=(--quick)
  SEQ=(--models node,hbnode,ghbnode,adamnode,gnesterovnode --peer-models hbnode,node --repeat 3)
  MNIST=(--subset "${MNIST_SUBSET:-60000}" --test-subset 10000 --epochs 1)
  TESTS=(tests/test_devices.py tests/test_compiled_solver.py tests/test_vjp.py tests/test_layers.py)
fi

SUMMARY=()
step() {  # step NAME COMMAND...: run, show and log the output, add a summary row (status, seconds, last line)
  local name=$1 start status last
  shift
  echo "=== $name: $*"
  start=$(date +%s)
  if "$@" 2>&1 | tee "$LOGS/$name.txt"; then status=ok; else status="FAILED"; fi
  last=$(grep -v '^\s*$' "$LOGS/$name.txt" | tail -n 1 | cut -c1-90 | tr '|' '/')
  SUMMARY+=("| $name | $status | $(($(date +%s) - start)) | $last |")
}

step environment "$PY" -c "import torch, monode; print('monode', monode.__version__, 'torch', torch.__version__, \
  'cuda', torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
step tests "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}"
step solver-overhead "$PY" benchmarks/solver_overhead.py --device "$DEV" "${OVERHEAD[@]}"
step sequences-eager "$PY" benchmarks/sequences.py --device "$DEV" --skip-training --no-compile --task walker2d "${SEQ[@]}"
step sequences-compiled "$PY" benchmarks/sequences.py --device "$DEV" --skip-training --task walker2d "${SEQ[@]}"
step mnist-epoch "$PY" benchmarks/mnist_nfe.py --device "$DEV" "${MNIST[@]}"

echo
echo "## monode GPU check ($DEV)"
echo "| step | status | seconds | last line |"
echo "|---|---|---|---|"
printf '%s\n' "${SUMMARY[@]}"
! printf '%s\n' "${SUMMARY[@]}" | grep -q FAILED
