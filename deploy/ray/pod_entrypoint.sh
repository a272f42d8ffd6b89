#!/usr/bin/env bash
# Entrypoint of a RunPod GPU pod of the Ray cluster (deploy/ray/cluster.yaml: dockerStartCmd).
# First boot (a warm spare being prepared): fetch the models onto the pod's volume, then idle; the
# node provider stops the pod after standby_warm_s. Every later start: join the head as a worker,
# so a warm start costs the container start plus Ray's join (no image pull, no model download).
set -euo pipefail
cd "$(dirname "$0")/../.."
READY=/workspace/.switchboard-ready
export SWITCHBOARD_MODELS_DIR=/workspace/models
if [[ ! -f "$READY" ]]; then
  python scripts/fetch_models.py
  touch "$READY"
  exec sleep infinity
fi
: "${RAY_HEAD_ADDRESS:?RAY_HEAD_ADDRESS must name the head (host:6379)}"
GPUS=$(nvidia-smi --list-gpus | wc -l)
exec ray start --address="$RAY_HEAD_ADDRESS" --num-gpus="$GPUS" --node-ip-address="${RUNPOD_PUBLIC_IP:-$(hostname -I | cut -d' ' -f1)}" --block
