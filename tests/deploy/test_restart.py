"""deploy/scripts/restart.sh against stand-in services, a stand-in nvidia-smi and a stand-in docker.

The stand-in service is a small HTTP server with GET /health that records every SIGTERM it gets;
it can also start a child that ignores SIGTERM, like a vLLM engine core left behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import RESTART, ROOT, makefile_commands, shellcheck_binary

from tools.stack import free_port

FAKE_SERVICE = r"""
import http.server, os, signal, subprocess, sys, threading, time
events = os.environ["FAKE_EVENTS"]
def note(what):
    with open(events, "a") as fh:
        fh.write(f"{what} {os.getpid()}\n")
if os.environ.get("FAKE_STUBBORN_CHILD"):
    subprocess.Popen([sys.executable, "-c",
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "open(os.environ['FAKE_EVENTS'], 'a').write(f'child {os.getpid()}\\n')\n"
        "while True: time.sleep(1)\n"])
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["FAKE_PORT"])), Health)
def on_term(signum, frame):
    note("SIGTERM")
    threading.Thread(target=server.shutdown).start()
signal.signal(signal.SIGTERM, on_term)
note("start")
server.serve_forever(poll_interval=0.05)
note("exit")
"""

FAKE_NVIDIA_SMI = """#!/bin/sh
# Stand-in nvidia-smi: compute apps from $FAKE_GPU_PIDS, memory from $FAKE_GPU_MEM.
echo "$*" >> "$FAKE_GPU_CALLS"
case "$*" in
  *query-compute-apps*) cat "$FAKE_GPU_PIDS" ;;
  *query-gpu=memory.used*) cat "$FAKE_GPU_MEM" ;;
esac
"""

FAKE_DOCKER = """#!/bin/sh
# Stand-in docker: records each call (and what nvidia-smi was asked by then).
echo "docker $*" >> "$FAKE_GPU_CALLS"
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


class Harness:
    """Runs restart.sh for service `stt` with a stand-in command, in a private run dir."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.events = tmp / "events"
        self.events.touch()
        (tmp / "fake_service.py").write_text(FAKE_SERVICE)
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        self.bin = bin_dir
        self.env: dict[str, str] = {
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(tmp),
            "SWITCHBOARD_RUN_DIR": str(tmp / "run"),
            "PYTHON": sys.executable,
            "STT_PORT": str(self.port),
            "FAKE_PORT": str(self.port),
            "FAKE_EVENTS": str(self.events),
            "SWITCHBOARD_CMD_STT": f"{sys.executable} {tmp / 'fake_service.py'}",
            "FAKE_GPU_CALLS": str(tmp / "gpu_calls"),
            "FAKE_GPU_PIDS": str(tmp / "gpu_pids"),
            "FAKE_GPU_MEM": str(tmp / "gpu_mem"),
        }
        (tmp / "gpu_pids").write_text("")
        (tmp / "gpu_mem").write_text("1024\n")

    def add_fake(self, name: str, script: str) -> None:
        path = self.bin / name
        path.write_text(script)
        path.chmod(0o755)

    def run(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(RESTART), *args],
            capture_output=True,
            text=True,
            env={**self.env, **env},
            timeout=timeout,
            cwd=self.tmp,
        )

    def lines(self, kind: str) -> list[int]:
        return [int(line.split()[1]) for line in self.events.read_text().splitlines() if line.startswith(kind)]

    def pidfile(self) -> int:
        return int((self.tmp / "run" / "run" / "stt.pid").read_text().split()[0])

    def cleanup(self) -> None:
        pids = {int(line.split()[1]) for line in self.events.read_text().splitlines() if line.split()[1:]}
        for pid in pids:
            if alive(pid):
                os.kill(pid, 9)


@pytest.fixture
def harness(tmp_path: Path) -> Any:
    h = Harness(tmp_path)
    yield h
    h.cleanup()


def test_restart_sends_sigterm_and_starts_a_fresh_healthy_process(harness: Harness) -> None:
    first = harness.run("stt")
    assert first.returncode == 0, first.stderr
    assert "stt: not running" in first.stderr and "healthy" in first.stderr
    old = harness.pidfile()
    assert harness.lines("start") == [old] and alive(old)

    second = harness.run("--grace", "5", "stt")
    assert second.returncode == 0, second.stderr
    new = harness.pidfile()
    assert new != old and alive(new) and not alive(old)
    assert harness.lines("SIGTERM") == [old], "the old process must get SIGTERM (once), not SIGKILL"
    assert harness.lines("exit") == [old], "the old process must exit cleanly"
    assert "SIGKILL" not in second.stderr
    assert "no nvidia-smi" in second.stderr

    stop = harness.run("--stop", "stt")
    assert stop.returncode == 0, stop.stderr
    assert not alive(new) and harness.lines("SIGTERM") == [old, new]
    assert not (harness.tmp / "run" / "run" / "stt.pid").exists()
    assert len(harness.lines("start")) == 2, "--stop must not start the service again"


def test_children_that_ignore_sigterm_are_killed_last(harness: Harness) -> None:
    started = harness.run("stt", FAKE_STUBBORN_CHILD="1")
    assert started.returncode == 0, started.stderr
    parent = harness.pidfile()
    deadline = time.monotonic() + 5
    while not harness.lines("child") and time.monotonic() < deadline:
        time.sleep(0.05)
    child = harness.lines("child")[0]

    began = time.monotonic()
    stop = harness.run("--stop", "--grace", "2", "stt")
    took = time.monotonic() - began
    assert stop.returncode == 0, stop.stderr
    assert harness.lines("SIGTERM")[0] == parent, "SIGTERM goes to the service first"
    assert harness.lines("exit") == [parent], "the service itself exits on SIGTERM"
    killed = [line for line in stop.stderr.splitlines() if "SIGKILL to" in line]
    assert len(killed) == 1 and killed[0].endswith(f"SIGKILL to {child} (did not exit on SIGTERM)"), stop.stderr
    assert not alive(parent) and not alive(child)
    assert took >= 4, "SIGKILL came before the grace periods (2 s + 2 s) had passed"


def test_finds_its_processes_without_the_environment_tag(harness: Harness) -> None:
    """Like redis-server, which overwrites /proc/PID/environ with its process title: the session
    recorded in the pid file still identifies the service."""
    cmd = f"env -u SWITCHBOARD_SERVICE {sys.executable} {harness.tmp / 'fake_service.py'}"
    assert harness.run("stt", SWITCHBOARD_CMD_STT=cmd).returncode == 0
    old = harness.pidfile()
    assert b"\0SWITCHBOARD_SERVICE=" not in b"\0" + Path(f"/proc/{old}/environ").read_bytes()
    proc = harness.run("--stop", "stt", SWITCHBOARD_CMD_STT=cmd)
    assert proc.returncode == 0, proc.stderr
    assert harness.lines("SIGTERM") == [old] and not alive(old)


def test_waits_for_gpu_memory_and_refuses_to_start_while_it_is_held(harness: Harness) -> None:
    harness.add_fake("nvidia-smi", FAKE_NVIDIA_SMI)
    assert harness.run("stt").returncode == 0
    old = harness.pidfile()
    # The stopped process's context is still listed by the driver (leaked memory).
    (harness.tmp / "gpu_pids").write_text(f"{old}\n")
    proc = harness.run("--grace", "5", "--gpu-timeout", "2", "stt")
    assert proc.returncode == 1, proc.stderr
    assert f"GPU memory is still held by pid(s) {old}" in proc.stderr
    assert not alive(old)
    assert len(harness.lines("start")) == 1, "must not start while the GPU memory is still held"

    # Held for a while after the exit, then released: the start must come after the release.
    assert harness.run("stt").returncode == 0
    running = harness.pidfile()
    (harness.tmp / "gpu_pids").write_text(f"{running}\n")

    def release() -> None:
        (harness.tmp / "gpu_pids").write_text("")
        with harness.events.open("a") as fh:
            fh.write("released 0\n")

    timer = threading.Timer(1.5, release)
    timer.start()
    try:
        proc = harness.run("--grace", "5", "--gpu-timeout", "10", "stt")
    finally:
        timer.cancel()
    assert proc.returncode == 0, proc.stderr
    assert "GPU memory used: 1024 MiB before stop, 1024 MiB now" in proc.stderr
    order = [line.split()[0] for line in harness.events.read_text().splitlines()]
    assert order[-4:] == ["SIGTERM", "exit", "released", "start"], order


def test_never_signals_a_process_it_did_not_start(harness: Harness) -> None:
    foreign = subprocess.Popen(
        [sys.executable, str(harness.tmp / "fake_service.py")],
        env={**harness.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while not harness.lines("start") and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        proc = harness.run("--grace", "1", "stt")
        assert proc.returncode == 1
        assert f"port {harness.port} is in use by a process this script did not start" in proc.stderr
        assert foreign.poll() is None and harness.lines("SIGTERM") == []
    finally:
        foreign.terminate()
        foreign.wait(timeout=10)


def test_failed_start_reports_the_log(harness: Harness) -> None:
    proc = harness.run("stt", SWITCHBOARD_CMD_STT=f"{sys.executable} -c 'raise SystemExit(\"model missing\")'")
    assert proc.returncode == 1
    assert "exited during startup" in proc.stderr and "model missing" in proc.stderr


def test_compose_mode_stops_waits_for_gpu_then_starts(harness: Harness) -> None:
    harness.add_fake("nvidia-smi", FAKE_NVIDIA_SMI)
    harness.add_fake("docker", FAKE_DOCKER)
    proc = harness.run("--compose", "--gpu-timeout", "3", "llm")
    assert proc.returncode == 0, proc.stderr
    calls = (harness.tmp / "gpu_calls").read_text().splitlines()
    docker = [i for i, c in enumerate(calls) if c.startswith("docker") and "version" not in c]
    stop, up = (calls[i] for i in docker)
    assert stop == "docker compose stop --timeout 60 llm"
    assert up == "docker compose up -d --no-deps --wait --wait-timeout 900 llm"
    gpu_between = [c for c in calls[docker[0] + 1 : docker[1]] if not c.startswith("docker")]
    assert any("memory.used" in c for c in gpu_between), "must check GPU memory between stop and start"


def test_process_mode_commands_match_the_makefile_and_compose(gpu_config: dict[str, Any]) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(ROOT),
        "PYTHON": "python",
        "SWITCHBOARD_RUN_DIR": "/nonexistent/run",
    }

    def printed(service: str, **extra: str) -> list[str]:
        proc = subprocess.run(
            ["bash", str(RESTART), "--print", service],
            capture_output=True,
            text=True,
            env={**env, **extra},
            timeout=10,
            cwd="/",
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()

    make = makefile_commands()
    for service in ("stt", "tts", "llm", "gateway"):
        assert printed(service) == make[f"run-{service}"], service
    llm = gpu_config["services"]["llm"]
    assert printed("llm", LLM_BACKEND="vllm", LLM_HOST="0.0.0.0") == ["vllm", "serve", *llm["command"]]
    eager = printed("llm", LLM_BACKEND="vllm", LLM_ENFORCE_EAGER="1")
    assert eager[-1] == "--enforce-eager"
    assert not Path("/nonexistent/run").exists()


def test_shellcheck_clean(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/bash\nrm -rf $1/*\n")
    flagged = subprocess.run([str(shellcheck_binary()), str(bad)], capture_output=True, text=True, timeout=30)
    assert flagged.returncode != 0 and "SC2086" in flagged.stdout, "shellcheck is not really checking"
    proc = subprocess.run([str(shellcheck_binary()), str(RESTART)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
