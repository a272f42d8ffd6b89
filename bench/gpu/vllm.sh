#!/usr/bin/env bash
# Run the real LLM (vLLM 0.26.0, the project's Qwen2.5-Coder-0.5B GGUF dequantized to bf16) on the
# lent GPU machine (Python 3.12, torch 2.11.0+cu130, no internet). Run from the repository root
# there; the kit comes from bench/gpu/make_vllm_kit.sh (build machine) as .gpu/v01 ... .gpu/vNN,
# one piece (<= 58 MiB) per folder, because one device call carries 64 MiB with the repo.
#
# Flow (each line one device call; folders carried in one call are gone by the next, /tmp stays
# while the machine is warm, so a machine that went back means starting again from v01):
#   carry .gpu/v01:  bash bench/gpu/vllm.sh stash
#   carry .gpu/v02:  bash bench/gpu/vllm.sh stash            ... up to the last vNN (SHA256, PIECES)
#   carry the last:  bash bench/gpu/vllm.sh stash install serve wait
#
# Subcommands (several may follow one another in one call; each runs once, in order):
#   stash              copy the carried .gpu/vNN/* into /tmp/vpieces
#   install            once all pieces are there: join, check sha256, untar into /tmp/vkit, pip install
#                      the wheels into /tmp/vsite (--no-deps; once, marker file), put fallback wheels in
#                      only where the machine's own versions are too old, dequantize the GGUF into
#                      /tmp/llm-hf (bf16 safetensors, names and shapes checked, once) with the
#                      tokenizer/config from the kit, and import vllm's OpenAI server as a check
#   serve [ARGS...]    start the OpenAI server (setsid nohup: it outlives the call) on 127.0.0.1:
#                      ${LLM_PORT:-8000}, log /tmp/vllm.log; ARGS (up to the next subcommand word)
#                      go to vllm; LLM_GPU_MEMORY_UTILIZATION (0.30), LLM_MAX_NUM_SEQS (256)
#                      (the server is `python -m vllm.entrypoints.openai.api_server`: one API server
#                      process; it accepts but ignores --api-server-count, which only `vllm serve`
#                      acts on, as compose.gpu.yaml's container does)
#   wait [SECONDS]     poll /health (default 420 s), print the log's tail, warm up with two bursts of
#                      ${LLM_WARM_N:-64} concurrent streaming chats (python -m bench.llm_warmup: the
#                      first concurrent batch after a start stalls for seconds), print one real reply
#   status             health, pid, the log's tail
#   stop               stop the server (its process group)
# Environment: NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 always;
# the server also gets PYTHONPATH=/tmp/vsite first, VLLM_USE_FLASHINFER_SAMPLER=0 (flashinfer is
# not carried), HF_HUB_OFFLINE=1, VLLM_NO_USAGE_STATS=1.
set -euo pipefail
cd "$(dirname "$0")/../.."

PIECES=/tmp/vpieces
KIT=/tmp/vkit
SITE=/tmp/vsite
HF=/tmp/llm-hf
LOG=/tmp/vllm.log
PIDFILE=/tmp/vllm.pid
STATE=/tmp/vkit-state
PY=${VLLM_PY:-python3}
PORT=${LLM_PORT:-8000}
MODEL_NAME=qwen2.5-0.5b-instruct
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PIP_ROOT_USER_ACTION=ignore

log() { echo "vllm.sh: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

cmd_stash() (
    set -euo pipefail
    shopt -s nullglob
    mkdir -p "$PIECES"
    local f n=0
    for f in .gpu/v[0-9][0-9]/*; do
        [[ -f "$f" ]] || continue
        cp -f "$f" "$PIECES/"
        log "stashed $f ($(du -m "$f" | cut -f1) MB)"
        n=$((n + 1))
    done
    ((n > 0)) || log "WARNING: nothing under .gpu/vNN/ in this call (carry a folder, e.g. .gpu/v01)"
    local have total
    have=$(find "$PIECES" -maxdepth 1 -name 'vllm-kit.tar.part*' | wc -l)
    if [[ -f "$PIECES/PIECES" ]]; then total=$(cat "$PIECES/PIECES"); else total="?"; fi
    log "$PIECES holds $have of $total pieces"
)

cmd_install() (
    set -euo pipefail
    mkdir -p "$STATE"
    if [[ ! -f "$STATE/unpacked" ]]; then
        [[ -f "$PIECES/PIECES" && -f "$PIECES/SHA256" ]] || die "no PIECES/SHA256 in $PIECES: stash the last folder first"
        local total i missing=""
        total=$(cat "$PIECES/PIECES")
        for ((i = 1; i <= total; i++)); do
            [[ -f "$(printf '%s/vllm-kit.tar.part%02d' "$PIECES" "$i")" ]] || missing+=" v$(printf %02d "$i")"
        done
        [[ -z "$missing" ]] || die "pieces missing in $PIECES:$missing (stash them first; a fresh machine needs all again)"
        log "joining $total pieces"
        cat "$PIECES"/vllm-kit.tar.part* >/tmp/vllm-kit.tar
        (cd /tmp && sha256sum -c --quiet "$PIECES/SHA256") || die "sha256 mismatch for the joined tar (a piece is stale or cut)"
        rm -rf "$KIT"
        mkdir -p "$KIT"
        tar -xf /tmp/vllm-kit.tar -C "$KIT"
        rm -f /tmp/vllm-kit.tar
        touch "$STATE/unpacked"
    fi
    if [[ ! -f "$STATE/pip" ]]; then
        log "installing $(find "$KIT" -maxdepth 1 -name '*.whl' | wc -l) wheels into $SITE"
        rm -rf "$SITE"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
            --target "$SITE" "$KIT"/*.whl
        PYTHONPATH="$SITE" "$PY" bench/gpu/vllm_deps.py check-installed "$SITE" --fallback "$KIT/fallback"
        touch "$STATE/pip"
    fi
    if [[ ! -f "$STATE/weights" ]]; then
        local gguf
        gguf=$(find "$KIT/model" -name '*.gguf' | head -n1)
        [[ -n "$gguf" ]] || die "no GGUF in $KIT/model"
        rm -rf "$HF"
        mkdir -p "$HF"
        cp "$KIT"/hf/* "$HF/"
        log "dequantizing $(basename "$gguf") into $HF (bf16)"
        PYTHONPATH="$SITE" "$PY" bench/gpu/vllm_hf.py weights --gguf "$gguf" --out "$HF"
        touch "$STATE/weights"
    fi
    if [[ ! -f "$STATE/imports" ]]; then
        PYTHONPATH="$SITE" VLLM_NO_USAGE_STATS=1 "$PY" -c \
            "import vllm, vllm.entrypoints.openai.api_server; print('vllm.sh: vllm', vllm.__version__, 'imports from', vllm.__file__)" \
            || die "vllm's OpenAI server does not import (see above)"
        touch "$STATE/imports"
    fi
    log "installed: $SITE, $HF ($(du -sh "$HF" | cut -f1))"
)

server_pid() {
    [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && cat "$PIDFILE"
}

healthy() {
    "$PY" -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:$PORT/health', timeout=2).status == 200 else 1)" 2>/dev/null
}

cmd_serve() {
    [[ -f "$STATE/weights" && -f "$STATE/pip" ]] || die "not installed: run 'install' first"
    local pid
    if pid=$(server_pid); then
        log "already running (pid $pid); 'stop' first to restart"
        return 0
    fi
    log "starting vLLM on 127.0.0.1:$PORT (log $LOG) $*"
    PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1 \
        VLLM_NO_USAGE_STATS=1 PYTHONUNBUFFERED=1 setsid nohup "$PY" -m vllm.entrypoints.openai.api_server \
        --model "$HF" --served-model-name "$MODEL_NAME" --host 127.0.0.1 --port "$PORT" \
        --max-model-len 4096 --gpu-memory-utilization "${LLM_GPU_MEMORY_UTILIZATION:-0.30}" \
        --max-num-seqs "${LLM_MAX_NUM_SEQS:-256}" --enable-prefix-caching \
        --enable-auto-tool-choice --tool-call-parser hermes "$@" >"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    log "pid $(cat "$PIDFILE")"
}

cmd_wait() (
    set -euo pipefail
    local limit=${1:-420} t0=$SECONDS
    until healthy; do
        if ! server_pid >/dev/null; then
            tail -n 60 "$LOG" >&2 || true
            die "the server is not running (it died or was never started; log above)"
        fi
        ((SECONDS - t0 < limit)) || {
            tail -n 40 "$LOG" >&2
            die "not healthy after ${limit}s"
        }
        sleep 2
    done
    log "healthy after $((SECONDS - t0)) s of waiting; log tail:"
    tail -n 15 "$LOG" >&2
    # Warm-up bursts and one real reply: the capacity benchmark's own warm-up (httpx is on the machine).
    "$PY" -m bench.llm_warmup --url "http://127.0.0.1:$PORT" --concurrency "${LLM_WARM_N:-64}"
)

cmd_status() {
    local pid
    if pid=$(server_pid); then log "running, pid $pid"; else log "not running"; fi
    if healthy; then log "healthy on port $PORT"; else log "not healthy on port $PORT"; fi
    [[ -f "$LOG" ]] && tail -n 20 "$LOG" >&2
    return 0
}

cmd_stop() {
    local pid
    if pid=$(server_pid); then
        kill -- "-$pid" 2>/dev/null || kill "$pid"
        log "stopped pid $pid"
    else
        log "not running"
    fi
    rm -f "$PIDFILE"
}

[[ $# -gt 0 ]] || {
    sed -n '2,/^set -euo/p' "$0" | sed '$d'
    exit 2
}
while [[ $# -gt 0 ]]; do
    sub=$1
    shift
    case "$sub" in
        stash) cmd_stash ;;
        install) cmd_install ;;
        serve)
            # vLLM arguments run up to the next subcommand word (e.g. `serve --max-num-seqs 128 wait`).
            extra=()
            while [[ $# -gt 0 && ! "$1" =~ ^(stash|install|serve|wait|status|stop)$ ]]; do
                extra+=("$1")
                shift
            done
            cmd_serve "${extra[@]}"
            ;;
        wait)
            if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
                cmd_wait "$1"
                shift
            else
                cmd_wait
            fi
            ;;
        status) cmd_status ;;
        stop) cmd_stop ;;
        *) die "unknown subcommand '$sub' (stash, install, serve, wait, status, stop)" ;;
    esac
done
