"""CPU and GPU meters for the capacity benchmark (:mod:`bench.capacity`).

* :class:`CoreUsage` — busy share of a set of CPU cores between two points in time, from the
  per-CPU lines of ``/proc/stat`` (Linux; ``user + nice + system + irq + softirq + steal`` over
  all jiffies, as ``top``/``mpstat`` count it).
* :class:`GroupCpu` — user + system CPU seconds of every live process
  whose command line matches a group's pattern, per process between two points in time
  (``/proc/<pid>/stat`` fields 14–15), so services started by someone
  else (the vLLM server and its engine-core process) are counted too.
* :class:`GpuMonitor` — ``nvidia-smi dmon`` sampled once a second in the background; per level
  it reports SM and memory-bandwidth utilisation (%) and the framebuffer memory in use (MiB).
* :func:`parse_cpus` / :func:`pin` — ``"0-11,14"`` CPU lists and ``os.sched_setaffinity``, so the
  load generator and the stack run on cores of their own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np

GROUPS: dict[str, re.Pattern[str]] = {
    "gateway": re.compile(r"-m gateway\b"),
    "stt": re.compile(r"services\.stt"),
    "tts": re.compile(r"services\.tts"),
    "llm": re.compile(r"services\.llm|llm_standin|vllm|VLLM", re.IGNORECASE),
    "redis": re.compile(r"redis-server"),
}
"""Process groups of the stack, by command line (``/proc/<pid>/cmdline``, NULs as spaces)."""


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    """``{"n", "p50", "p95", "p99"}`` of ``values`` (numpy linear interpolation); ``None``s when empty."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None}
    arr = np.asarray(values, dtype=float)
    return {"n": int(arr.size), **{f"p{q}": float(np.percentile(arr, q)) for q in (50, 95, 99)}}


def process_stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3 onwards; ``proc(5)``).

    Raises:
        OSError: no such process (or it is gone).
    """
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def parse_cpus(spec: str | None) -> set[int] | None:
    """``"0-11,14"`` → ``{0, …, 11, 14}``; ``None``/``""`` → ``None`` (no pinning).

    Raises:
        ValueError: a malformed list, or a CPU this machine does not have.
    """
    if not spec:
        return None
    cpus: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        first, last = int(lo), int(hi or lo)
        if first > last:
            raise ValueError(f"bad CPU range {part!r}")
        cpus.update(range(first, last + 1))
    have = os.cpu_count() or 1
    if max(cpus) >= have:
        raise ValueError(f"CPU list {spec!r} names CPU {max(cpus)}; this machine has {have}")
    return cpus


def pin(cpus: set[int] | None) -> None:
    """Run this process (and what it starts later) on ``cpus``; ``None`` leaves it as it is."""
    if cpus:
        os.sched_setaffinity(0, cpus)


def _per_cpu_jiffies() -> dict[int, tuple[int, int]]:
    """CPU index → (busy, total) jiffies since boot."""
    out: dict[int, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *vals = line.split()
        v = [int(x) for x in vals[:8]]
        idle = v[3] + v[4]  # idle + iowait
        out[int(name[3:])] = (sum(v) - idle, sum(v))
    return out


class CoreUsage:
    """Busy share of core sets between :meth:`start` and :meth:`busy` (0.0–1.0 each)."""

    def __init__(self) -> None:
        self._t0 = _per_cpu_jiffies()

    def start(self) -> None:
        """Take the first snapshot."""
        self._t0 = _per_cpu_jiffies()

    def busy(self, cpus: set[int] | None) -> float | None:
        """Mean busy share of ``cpus`` (all CPUs when ``None``) since :meth:`start`."""
        t1 = _per_cpu_jiffies()
        keys = sorted(cpus) if cpus else sorted(t1)
        busy = sum(t1[c][0] - self._t0[c][0] for c in keys if c in t1 and c in self._t0)
        total = sum(t1[c][1] - self._t0[c][1] for c in keys if c in t1 and c in self._t0)
        return busy / total if total else None


class GroupCpu:
    """CPU seconds of each process group between two points in time, counted per process.

    A snapshot maps every live process whose command line matches a group's pattern to its user +
    system CPU seconds (``/proc/<pid>/stat`` fields 14–15); :meth:`since` sums, per group, each
    process's growth since the earlier snapshot (a process new since then counts from 0, one that
    exited meanwhile drops out). Summing whole groups at each end instead goes negative when a
    process of the group exits during the interval (a previous design's service still shutting
    down) and counts processes that merely came or went.
    """

    def __init__(self, groups: dict[str, re.Pattern[str]] = GROUPS) -> None:
        self.groups = groups
        self.t0 = self.snapshot()

    def snapshot(self) -> dict[int, tuple[str, float]]:
        """``{pid: (group, cpu_seconds)}`` of the live matching processes (this process excluded)."""
        tick = os.sysconf("SC_CLK_TCK")
        me = os.getpid()
        out: dict[int, tuple[str, float]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                fields = process_stat(int(entry.name))
            except OSError:
                continue  # gone meanwhile
            for name, pattern in self.groups.items():
                if pattern.search(cmd):
                    out[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / tick)
                    break
        return out

    def since(self) -> dict[str, float]:
        """CPU seconds per group since this meter was made (every group present, 0.0 if idle)."""
        totals = dict.fromkeys(self.groups, 0.0)
        for pid, (name, cpu) in self.snapshot().items():
            before = self.t0.get(pid)
            totals[name] += cpu - (before[1] if before is not None and before[0] == name else 0.0)
        return totals


class GpuMonitor:
    """``nvidia-smi dmon -s um -d 1`` in the background (a no-op where there is no nvidia-smi).

    Use as a context manager around one load level; :meth:`summary` then gives
    ``{"samples", "sm_pct": {p50, max}, "mem_bw_pct": {p50, max}, "fb_used_mib_max", "process_mib"}``
    (``process_mib``: GPU memory per process group of :data:`GROUPS` at the level's end).
    """

    def __init__(self) -> None:
        self._exe = shutil.which("nvidia-smi")
        self._proc: subprocess.Popen[str] | None = None
        self._rows: list[dict[str, float]] = []
        self._thread: threading.Thread | None = None
        self._apps: dict[str, float] = {}

    def __enter__(self) -> GpuMonitor:
        if self._exe:
            self._proc = subprocess.Popen(
                [self._exe, "dmon", "-s", "um", "-d", "1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        header: list[str] = []
        for line in self._proc.stdout:
            parts = line.split()
            if line.startswith("# gpu") or line.startswith("#gpu"):
                header = line.lstrip("#").split()
            elif parts and not line.startswith("#") and header:
                row: dict[str, float] = {}
                for key, val in zip(header, parts, strict=False):
                    try:
                        row[key] = float(val)
                    except ValueError:
                        pass  # "-" for a counter this GPU lacks
                self._rows.append(row)

    def __exit__(self, *exc: object) -> None:
        self._apps = self._per_process_memory()
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _per_process_memory(self) -> dict[str, float]:
        """GPU memory (MiB) held by each process group at the end of the level (``--query-compute-apps``)."""
        if not self._exe:
            return {}
        try:
            out = subprocess.run(
                [self._exe, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return {}
        groups: dict[str, float] = {}
        for line in out.splitlines():
            pid, _, mib = (x.strip() for x in line.partition(","))
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                used = float(mib)
            except (OSError, ValueError):
                continue
            name = next((g for g, pat in GROUPS.items() if pat.search(cmd)), "other")
            groups[name] = groups.get(name, 0.0) + used
        return groups

    def summary(self) -> dict[str, Any] | None:
        """Per-level GPU figures, or ``None`` without nvidia-smi / samples."""
        if not self._rows:
            return None

        def stats(key: str) -> dict[str, float] | None:
            vals = [r[key] for r in self._rows if key in r]
            return {"p50": float(np.median(vals)), "max": float(max(vals))} if vals else None

        fb = [r["fb"] for r in self._rows if "fb" in r]
        return {
            "samples": len(self._rows),
            "sm_pct": stats("sm"),
            "mem_bw_pct": stats("mem"),
            "fb_used_mib_max": float(max(fb)) if fb else None,
            "process_mib": self._apps,
        }
