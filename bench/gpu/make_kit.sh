#!/usr/bin/env bash
# Build the kit that bench/gpu/setup.sh and bench/gpu/capacity.sh expect, on the build machine
# (it reaches PyPI and Debian's apt; the GPU machine reaches nothing). Run from the repo root after
# `make models`. Each folder is carried in its own device call (64 MiB per call):
#   .gpu/whl1 + .gpu/deb, .gpu/whl2, .gpu/k1, .gpu/m2, .gpu/m3, .gpu/m4
# Wheels are cp312 manylinux builds of what the box (Python 3.12, torch 2.11, KINDS.md's package
# list) lacks, one version each; `av` is left out (setup.sh installs a stub: only raw PCM reaches STT).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
mkdir -p .gpu/whl1 .gpu/whl2 .gpu/deb/fallback .gpu/k1 .gpu/m2 .gpu/m3 .gpu/m4

download() {
    local dest=$1
    shift
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 \
        --platform manylinux1_x86_64 -d "$dest" "$@"
}

download .gpu/whl1 ctranslate2==4.8.5 espeakng-loader==0.2.4 faster-whisper==1.2.1
download .gpu/whl2 \
    orjson==3.13.0 threadpoolctl==3.8.0 aiohttp-retry==2.9.1 aiosqlite==0.22.1 alembic==1.20.1 annotated-types==0.8.0 anyio==4.16.0 cffi==2.1.1 distro==1.9.0 dlinfo==2.0.0 \
    fastapi==0.165.0 greenlet==3.5.6 h11==0.16.0 httpcore2==2.16.2 httptools==0.9.0 httpx2==2.16.2 idna==3.20 jiter==0.19.0 \
    kokoro==0.9.4 kokoro-onnx==0.6.1 loguru==0.7.3 mako==1.4.3 num2words==0.5.14 openai==3.54.0 opentelemetry-api==1.45.2 phonemizer==3.4.0 \
    pycparser==3.12 pydantic==2.14.3 pydantic-core==2.50.4 pydantic-settings==2.16.3 pyjwt==2.15.1 python-dotenv==1.2.4 python-multipart==0.0.34 redis==8.1.0 \
    sniffio==1.3.1 soundfile==0.14.0 soxr==1.1.0 sqlalchemy==2.1.9 starlette==1.10.0 tenacity==9.2.1 truststore==0.10.5 twilio==9.13.0 typing-extensions==4.16.0 typing-inspection==0.4.5 uvicorn==0.54.0 websockets==17.4
# docopt (a num2words dependency) exists only as a source archive: build a pure-Python wheel.
"$PY" -m pip wheel -q --no-deps -w .gpu/whl2 docopt==0.6.2

# redis-server for the box, unpacked there with dpkg-deb -x into /tmp/redis (never into /).
(cd .gpu/deb && apt-get download redis-server redis-tools libjemalloc2 liblzf1 \
    && for f in *_*.deb; do mv "$f" "${f%%_*}.deb"; done)
(cd .gpu/deb/fallback && apt-get download libssl3 libsystemd0 libatomic1 libcap2 libgcrypt20 \
    libgpg-error0 liblz4-1 liblzma5 libzstd1 && for f in *_*.deb; do mv "$f" "${f%%_*}.deb"; done)

# Models in pieces under 64 MiB (joined and checked by sha256 in capacity.sh).
K=models/kokoro/kokoro-v1.0.int8.onnx
W=models/whisper-tiny.en
head -c 38000000 $K >.gpu/k1/kokoro.part1
tail -c +38000001 $K >.gpu/m2/kokoro.part2
"$PY" -c "import numpy as np; v = np.load('models/kokoro/voices-v1.0.bin'); np.savez(open('.gpu/m2/voices-small.bin', 'wb'), **{k: v[k] for k in ('af_heart', 'am_michael')})"
head -c 50000000 $W/model.bin >.gpu/m3/model.bin.part1
tail -c +50000001 $W/model.bin >.gpu/m4/model.bin.part2
cp $W/config.json $W/tokenizer.json $W/vocabulary.txt models/smart-turn/smart-turn-v3.2-cpu.onnx .gpu/m4/
sha256sum $K $W/model.bin >.gpu/m4/SHA256

# onnxruntime-gpu (the STT CUDA image's version), split into pieces of <= 58 MiB: .gpu/o1/ort.whl.part1, ...
# The last folder also holds its SHA256 and the wheel's file name (joined and installed by capacity.sh).
ORT=onnxruntime-gpu==1.31.1
rm -rf .gpu/ort-wheel .gpu/o[0-9]
download .gpu/ort-wheel "$ORT"
wheel=$(find .gpu/ort-wheel -name 'onnxruntime_gpu-*.whl' | head -n1)
split -b 58M -d -a 1 --numeric-suffixes=1 "$wheel" .gpu/ort-wheel/ort.whl.part
n=0
for part in .gpu/ort-wheel/ort.whl.part*; do
    n=$((n + 1))
    mkdir -p ".gpu/o$n"
    mv "$part" ".gpu/o$n/"
done
(cd .gpu/ort-wheel && sha256sum "$(basename "$wheel")") >".gpu/o$n/ORT_SHA256"
echo "$n" >".gpu/o$n/ORT_PIECES"
rm -rf .gpu/ort-wheel
du -sh .gpu/*
