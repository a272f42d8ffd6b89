#!/usr/bin/env bash
# Prepare the lent GPU machine (no internet, no apt) to run the Switchboard stack from this checkout.
#
# Source it from the repository root at the start of each device command:
#     source bench/gpu/setup.sh && python3 -m tools.stack ...
# (or, without sourcing: eval "$(bash bench/gpu/setup.sh)").
#
# What it uses (git-ignored folders, carried with the device tool's `carry`):
#   .gpu/whl1/ .gpu/whl2/ [.gpu/whl3/]  cp312 manylinux wheels, installed with --no-deps into /tmp/site
#   .gpu/deb/*.deb                      redis-server + the libraries it needs, unpacked into /tmp/redis
#   .gpu/deb/fallback/*.deb             system libraries (libssl3, libsystemd0, libatomic1, ...) copied
#                                       in only when redis-server's `ldd` reports them missing
# Each folder is installed once per machine (marker files under /tmp/sb-kit): sourcing it again in a
# later call on the same warm machine takes well under a second. Folders that are absent are skipped,
# so the kit can arrive over several calls (each carried folder must fit one call's 64 MiB).
#
# It exports: PYTHONPATH (/tmp/site, the repo root, then a stub `av` if PyAV is not installed),
# LD_LIBRARY_PATH (CUDA-12 cuBLAS names pointing at the CUDA-13 cuBLAS for CTranslate2, and the
# redis libraries), PATH (/tmp/redis/usr/bin first) and HF_HUB_OFFLINE=1 (nothing can be fetched there).
# shellcheck shell=bash

SB_SITE="${SB_SITE:-/tmp/site}"
SB_STATE="${SB_STATE:-/tmp/sb-kit}"
SB_REDIS=/tmp/redis
SB_CU12=/tmp/cu12
SB_STUBS=/tmp/sb-stubs

# Installs run in a subshell with strict mode, so a sourcing shell keeps its own options.
_sb_install() (
    set -euo pipefail
    mkdir -p "$SB_STATE" "$SB_SITE"

    # 1. Python wheels, one folder at a time (marker = the folder's file list).
    local dir key
    for dir in .gpu/whl1 .gpu/whl2 .gpu/whl3; do
        compgen -G "$dir/*.whl" >/dev/null || continue
        key="$SB_STATE/$(basename "$dir").$(stat -c '%n %s' "$dir"/*.whl | md5sum | cut -c1-12)"
        [[ -e "$key" ]] && continue
        echo "setup.sh: installing $(find "$dir" -maxdepth 1 -name '*.whl' | wc -l) wheels from $dir" >&2
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --disable-pip-version-check --target "$SB_SITE" "$dir"/*.whl >&2
        touch "$key"
    done

    # 2. faster_whisper imports PyAV at import time; without the av wheel, a stub lets it import
    #    (only FFmpeg decoding of non-WAV/FLAC/OGG uploads is then unavailable).
    if [[ ! -d "$SB_SITE/av" && ! -f "$SB_STUBS/av/__init__.py" ]]; then
        mkdir -p "$SB_STUBS/av"
        cat >"$SB_STUBS/av/__init__.py" <<'EOF'
"""Stub of PyAV (GPU kit): faster_whisper imports `av` at import; FFmpeg decoding is unavailable."""

import types


class FFmpegError(Exception):
    pass


class InvalidDataError(FFmpegError, ValueError):
    pass


error = types.SimpleNamespace(FFmpegError=FFmpegError, InvalidDataError=InvalidDataError)
__version__ = "0+stub"


def open(*args, **kwargs):  # noqa: A001
    raise InvalidDataError("PyAV is not installed on this machine (stub from bench/gpu/setup.sh)")
EOF
    fi

    # 3. CTranslate2 4.8.5 dlopens libcublas.so.12: point the CUDA-12 names at a CUDA-13 cuBLAS.
    #    Prefer the cuBLAS that PyTorch itself loads (pip's nvidia-cublas, nvidia/cu13/lib), so both
    #    processes' libraries agree; SB_CUBLAS_DIR overrides, /usr/local/cuda-13.0 is the fallback.
    local sp lib="" cand
    sp="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    for cand in ${SB_CUBLAS_DIR:+"$SB_CUBLAS_DIR"} "$sp"/nvidia/cu13/lib "$sp"/nvidia/cublas/lib /usr/local/cuda-13.0/targets/x86_64-linux/lib \
        /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda/lib64; do
        if [[ -e "$cand/libcublas.so.13" && -e "$cand/libcublasLt.so.13" ]]; then
            lib="$cand"
            break
        fi
    done
    if [[ -n "$lib" ]]; then
        mkdir -p "$SB_CU12"
        ln -sf "$lib/libcublas.so.13" "$SB_CU12/libcublas.so.12"
        ln -sf "$lib/libcublasLt.so.13" "$SB_CU12/libcublasLt.so.12"
        echo "$lib" >"$SB_STATE/cublas_dir"
    else
        echo "setup.sh: WARNING: no libcublas.so.13 found; CTranslate2 on CUDA will fail" >&2
        : >"$SB_STATE/cublas_dir"
    fi

    # 3b. onnxruntime-gpu (carried by capacity.sh's `ort`) dlopens cuDNN 9, cuFFT, cuRAND and the CUDA
    #     runtime by name: record the folders of the copies PyTorch's pip packages put on this machine.
    local libdirs="" d
    for name in libcudnn.so.9 libcufft.so.12 libcurand.so.10 libcudart.so.13; do
        d="$(find "$sp"/nvidia -name "$name" -printf '%h\n' 2>/dev/null | head -n1)"
        [[ -n "$d" && ":$libdirs:" != *":$d:"* ]] && libdirs+="${libdirs:+:}$d"
    done
    echo "$libdirs" >"$SB_STATE/cuda_lib_dirs"

    # 4. redis-server from Debian packages, unpacked (not installed) into /tmp/redis.
    if compgen -G ".gpu/deb/*.deb" >/dev/null; then
        key="$SB_STATE/deb.$(find .gpu/deb -name '*.deb' -printf '%p %s\n' | sort | md5sum | cut -c1-12)"
        if [[ ! -e "$key" ]]; then
            local deb rlib missing name found round
            mkdir -p "$SB_REDIS"
            for deb in .gpu/deb/*.deb; do _sb_unpack "$deb" "$SB_REDIS"; done
            rlib="$SB_REDIS/usr/lib/x86_64-linux-gnu"
            mkdir -p "$rlib"
            # Copy in only the system libraries this image lacks (never shadow ones it has).
            for round in 1 2 3 4 5; do
                missing="$(LD_LIBRARY_PATH="$rlib" ldd "$SB_REDIS/usr/bin/redis-server" | awk '/not found/ {print $1}' || true)"
                [[ -z "$missing" ]] && break
                if [[ ! -d "$SB_REDIS-fallback" ]]; then
                    mkdir -p "$SB_REDIS-fallback"
                    for deb in .gpu/deb/fallback/*.deb; do
                        [[ -e "$deb" ]] && _sb_unpack "$deb" "$SB_REDIS-fallback"
                    done
                fi
                for name in $missing; do
                    found="$(find "$SB_REDIS-fallback" -name "$name" \( -type f -o -type l \) | head -n1)"
                    if [[ -n "$found" ]]; then
                        echo "setup.sh: round $round: $name missing here, using the carried copy" >&2
                        cp -L "$found" "$rlib/$name"
                    else
                        echo "setup.sh: WARNING: $name missing and not in .gpu/deb/fallback" >&2
                    fi
                done
            done
            LD_LIBRARY_PATH="$rlib" "$SB_REDIS/usr/bin/redis-server" --version >&2
            touch "$key"
        fi
    fi
)

# Unpack a .deb's files (dpkg-deb where there is one, else ar + tar).
_sb_unpack() {
    if command -v dpkg-deb >/dev/null; then
        dpkg-deb -x "$1" "$2"
    else
        local tmp deb
        tmp="$(mktemp -d)"
        deb="$(realpath "$1")"
        (cd "$tmp" && ar x "$deb") && tar -xf "$tmp"/data.tar.* -C "$2"
        rm -rf "$tmp"
    fi
}

# Prepend $2 to the path-list variable named $1 unless it is already there.
_sb_prepend() {
    local cur="${!1:-}"
    case ":$cur:" in
        *":$2:"*) ;;
        *) printf -v "$1" '%s' "$2${cur:+:$cur}" ;;
    esac
}

_sb_append() {
    local cur="${!1:-}"
    case ":$cur:" in
        *":$2:"*) ;;
        *) printf -v "$1" '%s' "${cur:+$cur:}$2" ;;
    esac
}

_sb_env() {
    local cublas_dir=""
    [[ -f "$SB_STATE/cublas_dir" ]] && cublas_dir="$(cat "$SB_STATE/cublas_dir")"
    _sb_prepend PYTHONPATH "$PWD"
    _sb_prepend PYTHONPATH "$SB_SITE"
    [[ -d "$SB_SITE/av" ]] || _sb_append PYTHONPATH "$SB_STUBS"
    [[ -d "$SB_REDIS/usr/lib/x86_64-linux-gnu" ]] && _sb_prepend LD_LIBRARY_PATH "$SB_REDIS/usr/lib/x86_64-linux-gnu"
    [[ -n "$cublas_dir" ]] && _sb_prepend LD_LIBRARY_PATH "$cublas_dir"
    local cuda_dirs="" d
    [[ -f "$SB_STATE/cuda_lib_dirs" ]] && cuda_dirs="$(cat "$SB_STATE/cuda_lib_dirs")"
    local IFS=:
    for d in $cuda_dirs; do _sb_append LD_LIBRARY_PATH "$d"; done
    unset IFS
    _sb_prepend LD_LIBRARY_PATH "$SB_CU12"
    [[ -d "$SB_REDIS/usr/bin" ]] && _sb_prepend PATH "$SB_REDIS/usr/bin"
    export PYTHONPATH LD_LIBRARY_PATH PATH
    export HF_HUB_OFFLINE=1
}

_sb_status() {
    local dir have=""
    for dir in whl1 whl2 whl3 deb; do
        if compgen -G "$SB_STATE/$dir.*" >/dev/null; then have+=" $dir:ok"; else have+=" $dir:-"; fi
    done
    echo "setup.sh: kit installed on this machine:$have (site=$SB_SITE)" >&2
}

if [[ ! -f bench/gpu/setup.sh ]]; then
    echo "setup.sh: run it from the repository root" >&2
    # shellcheck disable=SC2317  # return works when sourced, exit when executed
    return 1 2>/dev/null || exit 1
fi

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    # Executed: install, then print the exports for eval.
    set -euo pipefail
    _sb_install
    _sb_env
    _sb_status
    printf 'export %s=%q\n' PYTHONPATH "$PYTHONPATH" LD_LIBRARY_PATH "$LD_LIBRARY_PATH" PATH "$PATH" \
        HF_HUB_OFFLINE "$HF_HUB_OFFLINE"
else
    # Sourced: install, then export into the calling shell; a failed install returns non-zero.
    if _sb_install; then
        _sb_env
        _sb_status
    else
        echo "setup.sh: install FAILED" >&2
        false
    fi
fi
