"""Process-wide thread limits of the native libraries the services call from Python.

numpy's BLAS (OpenBLAS in the PyPI wheels) starts one thread per core and lets them spin for a
while after each call. The services make many small numpy calls (Whisper log-mel features for STT
and for Smart Turn, in their own thread pools), so those spinning threads burn CPU for no work:
on the 2-core build box a Smart Turn check cost 77 ms of CPU with OpenBLAS's 2 threads and 43 ms
with 1 (docs/benchmarks.md), and the cost grows with the host's core count.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def limit_blas_threads(threads: int) -> None:
    """Cap numpy's BLAS at ``threads`` threads for the whole process (every thread, from now on).

    Uses threadpoolctl (joblib's maintained library, which finds OpenBLAS/MKL/BLIS however numpy
    was built) rather than ``OPENBLAS_NUM_THREADS``, which only works if set before numpy loads.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")
    log.debug("BLAS threads: %s", [(i["internal_api"], i["num_threads"]) for i in threadpool_info()])


def lower_cpu_priority(nice: int) -> int | None:
    """Run this process (and its threads) at Unix priority ``nice`` (0–19; 0 leaves it as it is).

    Where the kernel groups processes by session ("autogroup", sched(7): on by default on most
    distributions, and every service of ``make dev`` leads a session of its own), the nice value of
    a process only orders it against the processes of its own session; between sessions the CPU is
    shared by the group's nice, ``/proc/self/autogroup``. So both are set: the process's own (all
    its threads: ``setpriority`` on each task) and, when this process leads its session, its group's.
    Lowering one's priority needs no privilege. Containers are cgroups: there compose's
    ``cpu_shares`` does the same (compose.yaml).

    Returns:
        The process's nice value afterwards; ``None`` when ``nice`` is 0 or the value could not be read.
    Errors (``OSError``: no ``/proc``, a read-only autogroup file) are logged and not raised.
    """
    if nice <= 0:
        return None
    try:
        for task in Path("/proc/self/task").iterdir():
            os.setpriority(os.PRIO_PROCESS, int(task.name), nice)
    except OSError as exc:
        log.warning("could not lower this process's CPU priority: %s", exc)
    if os.getsid(0) == os.getpid():
        try:
            Path("/proc/self/autogroup").write_text(f"{nice}\n")
        except OSError as exc:
            log.debug("autogroup nice not set: %s", exc)
    try:
        return os.getpriority(os.PRIO_PROCESS, 0)
    except OSError:
        return None
