"""shared.threads.lower_cpu_priority: the process's nice value and, when it leads its session, its
autogroup's (run in child processes, so the test runner keeps its own priority)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import PROJECT_ROOT

CHILD = """
import sys, threading
from pathlib import Path
from shared.threads import lower_cpu_priority
nice = lower_cpu_priority(int(sys.argv[1]))
import os
seen = []
t = threading.Thread(target=lambda: seen.append(os.getpriority(os.PRIO_PROCESS, 0)))
t.start(); t.join()
group = Path("/proc/self/autogroup")
print(nice, seen[0], group.read_text().split()[-1] if group.exists() else "-")
"""


def run_child(nice: int, new_session: bool) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(nice)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
        start_new_session=new_session,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    return out.stdout.split()


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_a_session_leader_lowers_itself_its_later_threads_and_its_autogroup() -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    nice, thread_nice, group = run_child(7, new_session=True)
    assert int(nice) == max(base, 7)
    assert int(thread_nice) == int(nice), "threads started later (llama.cpp's pool) inherit it"
    if Path("/proc/self/autogroup").exists():
        assert group == "7"


def test_zero_leaves_the_priority_alone() -> None:
    nice, thread_nice, _ = run_child(0, new_session=True)
    assert nice == "None"
    assert int(thread_nice) == os.getpriority(os.PRIO_PROCESS, 0)
