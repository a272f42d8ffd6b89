#!/usr/bin/env bash
# Create the virtualenv and install every Python dependency, pinned by constraints.txt.
# Usage: scripts/venv_setup.sh [python] [venv-dir]. Idempotent: a second run takes seconds.
set -euo pipefail
PY=${1:-python3.11}
VENV=${2:-.venv}
command -v "$PY" >/dev/null 2>&1 || PY=python3
STAMP="$VENV/.installed"
HASH=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ] && "$VENV/bin/python" -c "import llama_cpp, faster_whisper, kokoro_onnx, ray.serve" 2>/dev/null; then
  echo "[venv] $VENV is up to date"
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip wheel setuptools
# llama-cpp-python compiles llama.cpp from source (8–18 min on 2 cores, once: pip caches the wheel).
# GGML_NATIVE=OFF keeps the cached wheel portable between machines of this kind (AVX2 still on).
echo "[venv] installing Python dependencies (the first run compiles llama.cpp: ~10 min)"
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" "$VENV/bin/pip" install -q -c constraints.txt -e '.[stt,tts,llm,gateway,scale,dev]'
echo "$HASH" > "$STAMP"
echo "[venv] done: $("$VENV/bin/python" --version)"
