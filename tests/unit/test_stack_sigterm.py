"""A program that owns a tools.stack.Stack stops its services when it is sent SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = """
import sys, tempfile, time
from pathlib import Path
from tools.stack import Ports, Stack
stack = Stack(Ports.free(), reuse=False, log_dir=Path(tempfile.mkdtemp()), webhook_sink=False, only={"redis"})
stack.start()
print(stack.services[0].proc.pid, flush=True)
try:
    time.sleep(60)
finally:
    stack.stop()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_sigterm_to_the_owner_stops_the_services_it_started() -> None:
    owner = subprocess.Popen([sys.executable, "-c", PROGRAM], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        redis_pid = int(owner.stdout.readline())
        assert _alive(redis_pid)
        owner.send_signal(signal.SIGTERM)
        assert owner.wait(timeout=60) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 15
        while _alive(redis_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(redis_pid), "the stack's redis-server outlived its owner"
    finally:
        owner.kill()
        owner.wait()
