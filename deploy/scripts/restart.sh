#!/usr/bin/env bash
# Graceful (re)start of Switchboard services on a GPU host: SIGTERM first, wait until the
# processes are gone AND the GPU memory they held is released, only then start again.
#
# Why: a CUDA process killed with SIGKILL (or whose parent was) can leave a child holding VRAM:
# vLLM's engine-core process outlives a killed API server. The next vLLM start then fails its
# check "Free memory on device ... is less than desired GPU memory utilization". So this script
# sends SIGTERM, waits --grace seconds, sends SIGTERM to leftover children, uses SIGKILL only as
# the last resort, then waits for nvidia-smi to show the memory free before starting.
#
# Usage: deploy/scripts/restart.sh [options] SERVICE...
#   SERVICE: redis stt tts llm gateway (handled in the order given; start GPU services
#   in the order stt tts llm, so vLLM's startup memory check sees what STT/TTS hold).
#
# Process mode (default; RunPod pods and other hosts without Docker):
#   Starts each service from the repository root as the Makefile's run-* target does
#   (`python -m services.stt`, ...; llm is `vllm serve` when LLM_BACKEND=vllm), detached, with
#   its output in var/log/SERVICE.log and its pid in var/run/SERVICE.pid, then waits for
#   GET /health (redis: PING). Each service runs in its own session and carries
#   SWITCHBOARD_SERVICE=SERVICE@RUN_DIR in its environment, both inherited by its children, so a
#   stop finds exactly those processes by id, orphans included. A process on the port that this
#   script did not start is never signalled: the script stops with an error instead.
# Compose mode (--compose; hosts with Docker): `docker compose stop --timeout GRACE SERVICE`
#   (Docker sends SIGTERM, SIGKILL after GRACE), waits for the GPU, then
#   `docker compose up -d --no-deps --wait SERVICE`. Files come from COMPOSE_FILE
#   (e.g. COMPOSE_FILE=compose.yaml:compose.gpu.yaml).
#
# Options:
#   --stop               stop only
#   --compose            compose mode
#   --grace S            seconds between SIGTERM and escalation (default 30; llm 60)
#   --gpu-timeout S      seconds to wait for the GPU memory to be released (default 60)
#   --health-timeout S   seconds to wait for /health after a start (default 300; llm 900)
#   --print SERVICE      print the process-mode start command, one argument per line, and exit
#
# Settings come from the environment, then from .env in the repository root (KEY=VALUE lines;
# the environment wins): STT_PORT TTS_PORT LLM_PORT GATEWAY_PORT REDIS_PORT, LLM_BACKEND
# (standin|vllm), the LLM_* vLLM knobs of compose.gpu.yaml (same names and defaults),
# PYTHON (default .venv/bin/python), VLLM_BIN (default vllm), REDIS_SERVER (default
# redis-server), REDIS_DIR (default var/redis), SWITCHBOARD_RUN_DIR (default var), and
# SWITCHBOARD_CMD_<SERVICE> to replace a service's start command (a shell command line).
# Exit status: 0 when every service is (re)started and healthy (or stopped, with --stop).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

log() { printf '[restart %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- settings: environment first, then .env (parsed, never executed) -------------------------
load_dotenv() {
  local file="$ROOT/.env" line key value
  [[ -f "$file" ]] || return 0
  while IFS= read -r line || [[ -n "$line" ]]; do
    line="${line#"${line%%[![:space:]]*}"}"
    [[ -z "$line" || "$line" == \#* ]] && continue
    line="${line#export }"
    [[ "$line" =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
    key="${BASH_REMATCH[1]}"
    value="${BASH_REMATCH[2]}"
    if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then
      value="${BASH_REMATCH[1]}"
    else  # unquoted: " #..." starts a comment, as in Compose and python-dotenv
      value="${value%%[[:space:]]#*}"
      value="${value%"${value##*[![:space:]]}"}"
      value="${value#"${value%%[![:space:]]*}"}"
    fi
    [[ -n "${!key+x}" ]] || export "$key=$value"
  done < "$file"
}
load_dotenv

RUN_DIR="$(realpath -m "${SWITCHBOARD_RUN_DIR:-var}")"
PYTHON="${PYTHON:-.venv/bin/python}"
MODE=process
STOP_ONLY=0
GRACE=""
GPU_TIMEOUT=60
HEALTH_TIMEOUT=""
PRINT=""
SERVICES=()

while (($#)); do
  case "$1" in
    --stop) STOP_ONLY=1 ;;
    --compose) MODE=compose ;;
    --grace) GRACE="$2"; shift ;;
    --gpu-timeout) GPU_TIMEOUT="$2"; shift ;;
    --health-timeout) HEALTH_TIMEOUT="$2"; shift ;;
    --print) PRINT="$2"; shift ;;
    -h|--help) sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) SERVICES+=("$1") ;;
  esac
  shift
done

is_service() { [[ "$1" =~ ^(redis|stt|tts|llm|gateway)$ ]]; }

port_of() {
  case "$1" in
    redis) echo "${REDIS_PORT:-6379}" ;;
    stt) echo "${STT_PORT:-8001}" ;;
    tts) echo "${TTS_PORT:-8002}" ;;
    llm) echo "${LLM_PORT:-8000}" ;;
    gateway) echo "${GATEWAY_PORT:-8080}" ;;
  esac
}

grace_of() { if [[ -n "$GRACE" ]]; then echo "$GRACE"; elif [[ "$1" == llm ]]; then echo 60; else echo 30; fi; }
health_timeout_of() {
  if [[ -n "$HEALTH_TIMEOUT" ]]; then echo "$HEALTH_TIMEOUT"; elif [[ "$1" == llm ]]; then echo 900; else echo 300; fi
}

# The process-mode start command of a service, into the array CMD.
start_cmd() {
  local name="$1" override_var="SWITCHBOARD_CMD_${1^^}"
  if [[ -n "${!override_var:-}" ]]; then
    CMD=(bash -c "exec ${!override_var}")
    return
  fi
  case "$name" in
    redis)
      CMD=("${REDIS_SERVER:-redis-server}" --bind 127.0.0.1 --port "$(port_of redis)"
           --appendonly yes --appendfsync everysec --dir "${REDIS_DIR:-$RUN_DIR/redis}") ;;
    stt) CMD=("$PYTHON" -m services.stt) ;;  # the Makefile's run-* commands
    tts) CMD=("$PYTHON" -m services.tts) ;;
    gateway) CMD=("$PYTHON" -m gateway) ;;
    llm)
      case "${LLM_BACKEND:-standin}" in
        standin) CMD=("$PYTHON" -m services.llm) ;;
        vllm)
          # Same arguments and defaults as the llm service in compose.gpu.yaml.
          CMD=("${VLLM_BIN:-vllm}" serve "${LLM_HF_MODEL:-Qwen/Qwen2.5-0.5B-Instruct}"
               --served-model-name "${LLM_SERVED_MODEL_NAME:-qwen2.5-0.5b-instruct}"
               --host "${LLM_HOST:-127.0.0.1}" --port "$(port_of llm)"
               --gpu-memory-utilization "${LLM_GPU_MEMORY_UTILIZATION:-0.60}"
               --max-model-len "${LLM_MAX_MODEL_LEN:-4096}"
               --max-num-seqs "${LLM_MAX_NUM_SEQS:-256}"
               --enable-prefix-caching --enable-auto-tool-choice --tool-call-parser hermes)
          case "${LLM_ENFORCE_EAGER:-0}" in 1|true|yes) CMD+=(--enforce-eager) ;; esac ;;
        *) die "LLM_BACKEND must be standin or vllm, not ${LLM_BACKEND}" ;;
      esac ;;
  esac
}

if [[ -n "$PRINT" ]]; then
  is_service "$PRINT" || die "unknown service $PRINT"
  start_cmd "$PRINT"
  printf '%s\n' "${CMD[@]}"
  exit 0
fi

((${#SERVICES[@]})) || die "no service given (redis stt tts llm gateway); see --help"
for s in "${SERVICES[@]}"; do is_service "$s" || die "unknown service $s"; done

# --- processes ---------------------------------------------------------------------------------
# Fields of /proc/PID/stat after the command name, into the array STAT: STAT[0] state,
# STAT[3] session id, STAT[19] start time (clock ticks since boot).
read_stat() {
  local line
  { IFS= read -r line < "/proc/$1/stat"; } 2>/dev/null || return 1
  read -r -a STAT <<<"${line##*) }"
}

alive() {  # a pid that exists and is not a zombie
  read_stat "$1" || return 1
  [[ "${STAT[0]}" != Z && "${STAT[0]}" != X ]]
}

# The processes of a service this script started. Two independent marks, so that neither an
# exited parent nor a rewritten environment loses one:
#  - the session: each service starts in its own session (setsid) whose id is its pid, which
#    children keep even when orphaned; the pid file records that pid and its start time, which
#    tells a recycled pid apart;
#  - the environment tag SWITCHBOARD_SERVICE=NAME@RUN_DIR, inherited by children, also by
#    those that start a session of their own. (Programs that rewrite their process title, such
#    as redis-server, clobber /proc/PID/environ: the session still finds them.)
service_pids() {
  local name="$1" tag="SWITCHBOARD_SERVICE=$1@$RUN_DIR" pidfile="$RUN_DIR/run/$1.pid"
  local sid="" since="" stat pid
  if [[ -s "$pidfile" ]]; then read -r sid since < "$pidfile" || true; fi
  for stat in /proc/[0-9]*/stat; do
    pid="${stat#/proc/}"; pid="${pid%/stat}"
    [[ "$pid" == "$$" || "$pid" == "$BASHPID" ]] && continue
    alive "$pid" || continue
    if [[ -n "$sid" && -n "$since" && "${STAT[3]}" == "$sid" && "${STAT[19]}" -ge "$since" ]] \
       || grep -qzxF "$tag" "/proc/$pid/environ" 2>/dev/null; then
      echo "$pid"
    fi
  done
  return 0
}

port_listener() {  # "pid=N,..." of whatever listens on the TCP port, if ss can tell
  command -v ss >/dev/null || return 0
  ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 || true
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_gone() {  # wait at least $1 seconds (whole) until none of the remaining args is alive
  local polls=$(($1 * 5)) p any; shift
  while :; do
    any=0
    for p in "$@"; do alive "$p" && any=1; done
    ((any)) || return 0
    ((polls-- > 0)) || return 1
    sleep 0.2
  done
}

still_alive() { local p; for p in "$@"; do alive "$p" && echo "$p"; done; return 0; }

# --- GPU -----------------------------------------------------------------------------------------
gpu_used_mib() {  # MiB used, summed over the GPUs this process sees
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null \
    | awk '{s += $1} END {if (NR) print s; else print "?"}' || echo "?"
}

# Wait until the GPU no longer holds memory for the stopped processes: none of their pids is
# listed as a compute app (host PID namespace), and the used memory has stopped falling (inside
# a container nvidia-smi often cannot list pids; the driver frees memory shortly after exit).
wait_gpu_released() {
  command -v nvidia-smi >/dev/null || { log "no nvidia-smi: not waiting for GPU memory"; return 0; }
  local deadline=$((SECONDS + GPU_TIMEOUT)) held p before prev now
  before="$(gpu_used_mib)"
  while :; do
    held=""
    local listed
    listed="$(nvidia-smi --query-compute-apps=pid --format=csv,noheader 2>/dev/null | tr -d ' ' || true)"
    for p in "$@"; do
      grep -qxF "$p" <<<"$listed" && held+=" $p"
    done
    [[ -z "$held" ]] && break
    if ((SECONDS >= deadline)); then
      log "GPU memory is still held by pid(s)${held} after ${GPU_TIMEOUT}s (nvidia-smi); not starting."
      log "Look with: nvidia-smi --query-compute-apps=pid,used_memory --format=csv"
      return 1
    fi
    sleep 1
  done
  prev="$before"
  while ((SECONDS < deadline)); do
    sleep 1
    now="$(gpu_used_mib)"
    [[ "$now" == "$prev" ]] && break
    prev="$now"
  done
  log "GPU memory used: ${before} MiB before stop, $(gpu_used_mib) MiB now"
}

# --- stop / start -------------------------------------------------------------------------------
stop_process() {
  local name="$1" grace second pidfile main="" pids left port
  grace="$(grace_of "$name")"
  pidfile="$RUN_DIR/run/$name.pid"
  mapfile -t pids < <(service_pids "$name")
  if [[ -s "$pidfile" ]]; then
    read -r main _ < "$pidfile" || true
    if ! printf '%s\n' "${pids[@]}" | grep -qxF "$main"; then main=""; fi
  fi
  if ((${#pids[@]} == 0)); then
    port="$(port_of "$name")"
    if port_open "$port"; then
      die "$name: port $port is in use by a process this script did not start ($(port_listener "$port")); stop it yourself, then rerun"
    fi
    log "$name: not running"
    rm -f "$pidfile"
    return 0
  fi
  [[ -n "$main" ]] || main="${pids[0]}"
  log "$name: SIGTERM to pid $main (processes: ${pids[*]}), up to ${grace}s to exit"
  kill -TERM "$main" 2>/dev/null || true
  if ! wait_gone "$grace" "${pids[@]}"; then
    mapfile -t left < <(still_alive "${pids[@]}")
    second=$((grace < 10 ? grace : 10))
    log "$name: still running after ${grace}s: ${left[*]}; SIGTERM to each, ${second}s more"
    kill -TERM "${left[@]}" 2>/dev/null || true
    if ! wait_gone "$second" "${left[@]}"; then
      mapfile -t left < <(still_alive "${left[@]}")
      log "$name: SIGKILL to ${left[*]} (did not exit on SIGTERM)"
      kill -KILL "${left[@]}" 2>/dev/null || true
      wait_gone 10 "${left[@]}" || die "$name: pid(s) ${left[*]} survive SIGKILL"
    fi
  fi
  rm -f "$pidfile"
  log "$name: stopped"
  wait_gpu_released "${pids[@]}"
}

# CUDA libraries installed as wheels (nvidia-cublas-cu12, nvidia-cudnn-cu12, ...) in PYTHON's
# environment, as a library path: faster-whisper/CTranslate2 and onnxruntime-gpu load them.
wheel_lib_path() {
  local sp
  sp="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null)" || return 0
  [[ -d "$sp/nvidia" ]] || return 0
  find "$sp/nvidia" -name 'lib*.so*' -printf '%h\n' | sort -u | paste -sd: -
}

healthy() {
  local name="$1" port
  port="$(port_of "$name")"
  if [[ "$name" == redis ]]; then
    (
      exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
      printf 'PING\r\n' >&3
      IFS= read -r -t 2 reply <&3 || exit 1
      [[ "$reply" == +PONG* ]]
    ) 2>/dev/null
  else
    "$PYTHON" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)" \
      "http://127.0.0.1:$port/health" >/dev/null 2>&1
  fi
}

start_process() {
  local name="$1" port timeout pid logf pidfile deadline libs
  port="$(port_of "$name")"
  port_open "$port" && die "$name: port $port is already in use ($(port_listener "$port")); not starting a second copy"
  start_cmd "$name"
  mkdir -p "$RUN_DIR/run" "$RUN_DIR/log"
  [[ "$name" == redis ]] && mkdir -p "${REDIS_DIR:-$RUN_DIR/redis}"
  logf="$RUN_DIR/log/$name.log"
  pidfile="$RUN_DIR/run/$name.pid"
  rm -f "$pidfile"
  local envs=("SWITCHBOARD_SERVICE=$name@$RUN_DIR")
  # Only for our Python services: vLLM's own torch brings the CUDA libraries it was built with.
  if [[ "$name" =~ ^(stt|tts|gateway)$ ]] && libs="$(wheel_lib_path)" && [[ -n "$libs" ]]; then
    envs+=("LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  fi
  log "$name: starting: ${CMD[*]} (log: $logf)"
  # A new session (setsid) detaches it from this shell; the inner bash records its own pid and
  # then becomes the service (exec), so the pid file holds the service's pid.
  # shellcheck disable=SC2016  # $$ and $@ are for the inner bash
  env "${envs[@]}" setsid bash -c 'echo $$ > "$0"; exec "$@"' "$pidfile" "${CMD[@]}" \
    >>"$logf" 2>&1 </dev/null &
  disown || true
  deadline=$((SECONDS + 5))
  until [[ -s "$pidfile" ]]; do
    ((SECONDS < deadline)) || die "$name: no pid file after 5s; see $logf"
    sleep 0.1
  done
  read -r pid < "$pidfile"
  # Record the start time beside the pid: it tells this process from a later one given the same pid.
  if read_stat "$pid"; then echo "$pid ${STAT[19]}" > "$pidfile"; fi
  timeout="$(health_timeout_of "$name")"
  deadline=$((SECONDS + timeout))
  until healthy "$name"; do
    if ! alive "$pid"; then
      log "$name: exited during startup; last lines of $logf:"
      tail -n 30 "$logf" >&2 || true
      rm -f "$pidfile"
      exit 1
    fi
    ((SECONDS < deadline)) || die "$name: not healthy after ${timeout}s (pid $pid still running; see $logf)"
    sleep 0.5
  done
  log "$name: healthy (pid $pid, port $port)"
}

compose() {
  if docker compose version >/dev/null 2>&1; then docker compose "$@"; else docker-compose "$@"; fi
}

restart_compose() {
  local name="$1" grace timeout
  grace="$(grace_of "$name")"
  timeout="$(health_timeout_of "$name")"
  log "$name: docker compose stop --timeout $grace (SIGTERM, SIGKILL after ${grace}s)"
  compose stop --timeout "$grace" "$name"
  wait_gpu_released
  ((STOP_ONLY)) && return 0
  log "$name: docker compose up -d --no-deps --wait"
  compose up -d --no-deps --wait --wait-timeout "$timeout" "$name"
  log "$name: healthy"
}

for s in "${SERVICES[@]}"; do
  if [[ "$MODE" == compose ]]; then
    restart_compose "$s"
  else
    stop_process "$s"
    ((STOP_ONLY)) || start_process "$s"
  fi
done
