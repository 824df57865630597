#!/usr/bin/env bash
# Idempotent set-up: system packages (apt, when missing), .venv at the repo root, the project.
# --test (make test): also what only the tests need, chromium and npm, and the reports' offline
# scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
tests=false
[ "${1:-}" = "--test" ] && tests=true

missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
if $tests; then
  command -v chromium >/dev/null || missing+=(chromium)  # renders reports/index.html in the tests
  command -v npm >/dev/null || missing+=(npm)  # fetches the reports' scripts (scripts/web_assets.py)
fi
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "mimicflow needs: ${missing[*]} — install them (sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip uv
  # torch first, with pip: this machine's registry setup serves a CPU wheel to pip (uv would
  # resolve the CUDA build and pull GBs). uv then sees torch==2.13.0 satisfied.
  .venv/bin/python -m pip install -q torch==2.13.0
  # triton is GPU-only for openai-whisper (word timing falls back to CPU code): skip its 1 GB.
  .venv/bin/uv pip install -q --python .venv/bin/python --override scripts/uv-overrides.txt -e ".[dev,prosody]"
  touch "$stamp"
fi
# The scripts and stylesheets the reports load (npm packages), so that they render offline.
if $tests; then
  .venv/bin/python scripts/web_assets.py
fi
