#!/usr/bin/env bash
# Build the vLLM kit that bench/gpu/vllm.sh installs on the GPU machine (H200/H100: Python 3.12,
# torch 2.11.0+cu130, transformers 5.17, no internet). Run from the repo root on the build machine
# (it reaches PyPI) after `make models`; idempotent (a second run re-resolves and re-packs, reusing
# the downloads). Recipe: ../shared/gpu/README.md, "vLLM on the GPU machine".
#
# One tar holds:
#   *.whl      vllm 0.26.0 slimmed (no FA2 .so, no MoE stable-libtorch .so, no vllm-rs: 304 -> ~118 MB)
#              + its dependencies the machine lacks (cp312/abi3/py3, manylinux <= 2_31: llguidance
#              1.7 has no older build; the machine's glibc is 2.39), resolved by `uv pip compile`
#              with torch & co. overridden to the machine's versions (not carried), the big kernel
#              packs dropped, apache-tvm-ffi 0.1.10 / xgrammar 0.2.7 / setuptools 80.10.2 kept
#              + gguf (dequantizes the GGUF there)
#   fallback/  newer copies of small packages the machine has at versions KINDS.md doesn't record;
#              vllm.sh installs one only where the machine's version fails a carried wheel's need
#   model/     the project's Q4_K_M GGUF (models/llm/, from `make models`)
#   hf/        tokenizer (eos <|im_end|>, all 22 Qwen2.5 added tokens), chat template, config.json,
#              generation_config.json, made here by bench/gpu/vllm_hf.py (weights are made there)
# split into pieces of at most 58 MiB, one per folder (a device call carries 64 MiB with the repo):
#   .gpu/v01/vllm-kit.tar.part01, .gpu/v02/vllm-kit.tar.part02, ...; the last folder also holds
#   SHA256 (of the whole tar) and PIECES (how many). Carry one folder per call and run
#   `bash bench/gpu/vllm.sh stash` in each; then `install`, `serve`, `wait` (see vllm.sh).
# Build state (venv with uv + CPU torch + transformers + gguf, downloads) lives in $VKIT_WORK.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}
WORK=${VKIT_WORK:-/tmp/vllm-kit-build}
GGUF=${GGUF:-models/llm/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf}
VLLM_VERSION=0.26.0
PIECE=$((58 * 1024 * 1024))
V=$WORK/venv
STAGE=$WORK/stage
HELPER=bench/gpu/vllm_hf.py
DEPS=bench/gpu/vllm_deps.py

log() { echo "make_vllm_kit: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

[[ -f "$GGUF" ]] || die "$GGUF not found: run 'make models' first"
command -v zip >/dev/null || die "zip is needed (apt-get install zip)"
mkdir -p "$WORK/dl" "$WORK/wheels" "$STAGE"

# 1. Build venv: uv (resolution), transformers + gguf + CPU torch (the GGUF tokenizer loader imports
#    torch; here pip's find-links holds a local CPU torch 2.13.0 wheel), packaging (checks).
if ! "$V/bin/python" -c "import uv, torch, transformers, gguf, packaging, jinja2" 2>/dev/null; then
    log "creating the build venv $V"
    "$PY" -m venv "$V"
    "$V/bin/python" -m pip install -q --disable-pip-version-check uv "torch==${VKIT_TORCH:-2.13.0}" \
        transformers==5.17.0 tokenizers==0.23.2 huggingface-hub==1.33.0 gguf==0.19.0 packaging jinja2
fi
export UV_PYTHON_DOWNLOADS=never
UV="$V/bin/uv"
[[ -x "$UV" ]] || UV="$V/bin/python -m uv"

PLATS=()
for n in 31 28 27 24 17 12 5; do PLATS+=(--platform "manylinux_2_${n}_x86_64"); done
PLATS+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
download() {
    "$V/bin/python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp "${PLATS[@]}" "$@"
}

# 2. The vllm wheel, slimmed (zip -d, and their lines out of RECORD so pip's record stays true).
download -d "$WORK/dl" "vllm==$VLLM_VERSION"
ORIG=$(find "$WORK/dl" -maxdepth 1 -name "vllm-$VLLM_VERSION-*.whl" | head -n1)
[[ -n "$ORIG" ]] || die "no vllm $VLLM_VERSION wheel downloaded"
rm -f "$STAGE"/*.whl
SLIM="$STAGE/$(basename "$ORIG")"
cp "$ORIG" "$SLIM"
DROP=(vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so vllm/_moe_C_stable_libtorch.abi3.so vllm/vllm-rs)
zip -q -d "$SLIM" "${DROP[@]}"
REC=$(mktemp -d)
RECORD="vllm-$VLLM_VERSION.dist-info/RECORD"
unzip -q "$SLIM" "$RECORD" -d "$REC"
grep -v -F -e "${DROP[0]}," -e "${DROP[1]}," -e "${DROP[2]}," "$REC/$RECORD" >"$REC/RECORD.new"
[[ $(($(wc -l <"$REC/$RECORD") - $(wc -l <"$REC/RECORD.new"))) -eq 3 ]] || die "RECORD: expected to drop 3 lines"
mv "$REC/RECORD.new" "$REC/$RECORD"
touch -d '1980-01-02 00:00:00' "$REC/$RECORD" # same bytes every run: pieces already stashed stay valid
(cd "$REC" && zip -q -X "$SLIM" "$RECORD")
rm -rf "$REC"
log "vllm wheel: $(du -m "$ORIG" | cut -f1) MB -> $(du -m "$SLIM" | cut -f1) MB"

# 3. Dependencies: resolve against the wheel for the machine, keep what it lacks, download.
"$V/bin/python" "$DEPS" overrides >"$WORK/overrides.txt"
printf 'vllm @ file://%s\ngguf==0.19.0\n' "$(realpath "$ORIG")" >"$WORK/req.in"
$UV pip compile "$WORK/req.in" --override "$WORK/overrides.txt" --python-version 3.12 \
    --python-platform x86_64-manylinux_2_31 --only-binary :all: --no-header --no-annotate \
    --quiet -o "$WORK/resolved.txt"
"$V/bin/python" "$DEPS" carry-list "$WORK/resolved.txt" >"$WORK/carry.txt"
"$V/bin/python" "$DEPS" carry-list --fallback "$WORK/resolved.txt" >"$WORK/fallback.txt"
download -d "$WORK/wheels" -r "$WORK/carry.txt" -r "$WORK/fallback.txt"
rm -rf "$STAGE/fallback"
mkdir -p "$STAGE/fallback"
# Exactly one wheel per pin (older versions from earlier runs are left out of the stage).
stage_pins() {
    "$V/bin/python" - "$1" "$WORK/wheels" "$2" <<'EOF'
import re, shutil, sys
from pathlib import Path
from packaging.utils import canonicalize_name, parse_wheel_filename
pins = {}
for line in Path(sys.argv[1]).read_text().split():
    name, ver = line.split("==")
    pins[canonicalize_name(name)] = ver
found = {}
for whl in Path(sys.argv[2]).glob("*.whl"):
    name, ver, _, _ = parse_wheel_filename(whl.name)
    if pins.get(name) == str(ver):
        found[name] = whl
missing = sorted(set(pins) - set(found))
if missing:
    sys.exit(f"make_vllm_kit: ERROR: no wheel downloaded for {missing}")
for whl in found.values():
    shutil.copy2(whl, Path(sys.argv[3]) / whl.name)
EOF
}
stage_pins "$WORK/carry.txt" "$STAGE"
stage_pins "$WORK/fallback.txt" "$STAGE/fallback"
NWHL=$(find "$STAGE" -maxdepth 1 -name '*.whl' | wc -l)
log "$NWHL wheels, $(du -cm "$STAGE"/*.whl | tail -n1 | cut -f1) MB; fallback/: $(find "$STAGE/fallback" -name '*.whl' | wc -l) wheels, $(du -sm "$STAGE/fallback" | cut -f1) MB"
"$V/bin/python" "$DEPS" check-wheels "$STAGE" || die "dependency check failed (see PROBLEM lines)"

# 4. Tokenizer + config (rebuilt when the GGUF or the helper is newer than it).
if [[ ! -f "$STAGE/hf/tokenizer.json" || "$HELPER" -nt "$STAGE/hf/tokenizer.json" || "$GGUF" -nt "$STAGE/hf/tokenizer.json" ]]; then
    rm -rf "$STAGE/hf"
    "$V/bin/python" "$HELPER" tokenizer --gguf "$GGUF" --out "$STAGE/hf"
fi

# 5. The GGUF (a link: tar -h stores the file), then one tar, split into the .gpu/vNN folders.
mkdir -p "$STAGE/model"
rm -f "$STAGE/model"/*
ln -s "$(realpath "$GGUF")" "$STAGE/model/$(basename "$GGUF")"
TAR="$WORK/vllm-kit.tar"
tar -C "$STAGE" -chf "$TAR" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner .
SUM=$(sha256sum "$TAR" | cut -d' ' -f1)
rm -rf "$WORK/parts" .gpu/v[0-9][0-9]
mkdir -p "$WORK/parts"
split -b "$PIECE" -d -a 2 --numeric-suffixes=1 "$TAR" "$WORK/parts/vllm-kit.tar.part"
N=$(find "$WORK/parts" -name 'vllm-kit.tar.part*' | wc -l)
for part in "$WORK/parts"/vllm-kit.tar.part*; do
    nn=${part##*.part}
    mkdir -p ".gpu/v$nn"
    mv "$part" ".gpu/v$nn/"
done
LAST=$(printf '.gpu/v%02d' "$N")
echo "$SUM  vllm-kit.tar" >"$LAST/SHA256"
echo "$N" >"$LAST/PIECES"
# Round trip: the pieces, in order, give the tar back.
[[ "$(cat .gpu/v[0-9][0-9]/vllm-kit.tar.part* | sha256sum | cut -d' ' -f1)" == "$SUM" ]] || die "pieces do not rejoin to the tar"
rm -f "$TAR"
log "tar $SUM in $N pieces of <= 58 MiB:"
du -b .gpu/v[0-9][0-9] | awk '{printf "  %s  %.1f MiB\n", $2, $1 / 1048576}' >&2
