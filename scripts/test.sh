#!/usr/bin/env bash
# Lint, type-check and run the test suite against real Redis, real vLLM (CPU), real FAISS and real HTTP.
set -euo pipefail
VENV="${VENV:-.venv}"
export OMP_WAIT_POLICY=PASSIVE TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  if ! command -v redis-server >/dev/null 2>&1; then
    apt-get install -y redis-server >/dev/null
  fi
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 50); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy" r2ec model_export service training loadtests entrypoints tests
# pytest exits 5 when it collected nothing: that must fail CI, never pass as green.
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
