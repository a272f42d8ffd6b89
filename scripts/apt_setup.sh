#!/usr/bin/env bash
# Debian packages Switchboard needs on a fresh machine (run as root, or with sudo available).
#   redis-server : per-call turn state (tests start their own on a free port)
#   espeak-ng    : phonemizer backend for Kokoro (kokoro-onnx also ships espeakng-loader)
#   sox, ffmpeg  : converting caller recordings by hand (sox in ../README), PyAV decodes in-process
#   npm          : `npm pack kokoro-js` for the Kokoro voice files
#   chromium     : the admin page's browser tests (headless)
#   postgresql   : only if no initdb is found (the tests start their own server with it)
set -euo pipefail
PKGS=(redis-server espeak-ng sox ffmpeg npm ca-certificates chromium)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  PKGS+=(postgresql)
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm may come from a non-Debian Node.js install: accept any npm on PATH.
if command -v npm >/dev/null 2>&1; then
  missing=("${missing[@]/npm}")
fi
read -r -a missing <<< "${missing[*]}"
if [ ${#missing[@]} -eq 0 ]; then
  echo "[apt] all packages present: ${PKGS[*]}"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "[apt] installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "[apt] done"
