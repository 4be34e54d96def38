#!/usr/bin/env bash
# One entry point for a fresh machine (Python 3.11, no torch): sets up .venv, then runs a job.
#   bash dev.sh demo   -> the main job: `monode compare point-cloud` on generated data
#   bash dev.sh test   -> the whole test suite
#   bash dev.sh lint   -> ruff (lint, format check) and mypy on src/
#   bash dev.sh docs   -> the documentation site, built strictly into site/ (mkdocs.yml)
#   bash dev.sh bench  -> the benchmark scripts in benchmarks/
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import torch, monode, mypy, ruff, xdist, mkdocs, tensorboard" 2>/dev/null; then
  "$PY" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
fi
export PATH="$PWD/.venv/bin:$PATH"
job=${1:-test}; shift || true
case "$job" in
  demo)  monode compare point-cloud --out runs/demo "$@" ;;
  test)  python -m pytest -q -n 2 --dist loadgroup "$@" ;;  # two workers, one torch thread each (tests/conftest.py)
  lint)  ruff check src tests benchmarks docs && ruff format --check src tests benchmarks docs && mypy ;;
  docs)  NO_MKDOCS_2_WARNING=1 mkdocs build --strict "$@" ;;
  bench) for b in benchmarks/*.py; do echo "== $b"; python "$b" "$@"; done ;;
  *) echo "usage: bash dev.sh {demo|test|lint|docs|bench} [args]" >&2; exit 2 ;;
esac
