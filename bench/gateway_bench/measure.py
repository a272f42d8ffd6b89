"""The arithmetic of ``make bench-gateway``: CPU from ``/proc``, pacing jitter, histogram quantiles.

Pure functions (text in, numbers out) so the unit tests check them without a gateway; the few
readers of ``/proc`` and of ``/metrics`` are thin wrappers around them.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FRAME_S = 0.02
"""One Twilio media frame: 20 ms."""
_BUCKET = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)_bucket\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_LE = re.compile(r'le="(?P<le>[^"]+)"')


# ---- CPU and memory from /proc ---------------------------------------------------------------
def cpu_seconds_from_stat(stat_text: str, clock_ticks: int) -> float:
    """User + system CPU seconds of one process from the text of ``/proc/<pid>/stat``.

    The command name (field 2) is in parentheses and may itself hold spaces or ``)``, so the
    fields are counted after the *last* ``)``: ``utime`` and ``stime`` are fields 14 and 15
    (``proc(5)``), in clock ticks (``os.sysconf("SC_CLK_TCK")``, 100 on Linux).

    Raises:
        ValueError: the text is not a ``stat`` line.
    """
    _, sep, rest = stat_text.rpartition(")")
    fields = rest.split()
    if not sep or len(fields) < 13:
        raise ValueError(f"not a /proc/<pid>/stat line: {stat_text[:80]!r}")
    # after ")" the fields start at 3 (state); utime is field 14 → index 11, stime → 12
    return (int(fields[11]) + int(fields[12])) / clock_ticks


def rss_mib_from_status(status_text: str) -> float:
    """Resident memory in MiB from the text of ``/proc/<pid>/status`` (its ``VmRSS:`` line, kB).

    Raises:
        ValueError: no ``VmRSS`` line (a zombie or a kernel thread).
    """
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError("no VmRSS line")


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds of a live process; ``None`` once it is gone."""
    try:
        return cpu_seconds_from_stat(Path(f"/proc/{pid}/stat").read_text(), os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError):
        return None


def rss_mib(pid: int) -> float | None:
    """Resident memory of a live process, MiB; ``None`` once it is gone."""
    try:
        return rss_mib_from_status(Path(f"/proc/{pid}/status").read_text())
    except (OSError, ValueError):
        return None


def cpu_delta(before: Mapping[int, float | None], after: Mapping[int, float | None]) -> float:
    """CPU seconds spent between two readings of the same processes (one that died is skipped)."""
    return sum(a - b for pid, b in before.items() if b is not None and (a := after.get(pid)) is not None)


# ---- outbound pacing -------------------------------------------------------------------------
def burst_deviations(arrivals: Sequence[float], lead_s: float, frame_s: float = FRAME_S) -> list[float]:
    """Seconds each agent frame of one reply burst arrived after (+) or before (−) its ideal time.

    The gateway's pacer (:class:`gateway.telephony.playback.Playback`) sends frame ``i`` of a
    burst ``lead_s`` ahead of real time, counted from the first frame: ideally at
    ``t0 + max(0, i·frame_s − lead_s)`` at the latest (it may send up to its ``tick`` earlier: a
    negative deviation, absorbed by Twilio's buffer). A loop that wakes late, or a stall, shows up as
    positive deviations; every frame after a stall is late by it too, because the schedule does not move.

    Args:
        arrivals: monotonic arrival times of the burst's frames, in order, seconds.
        lead_s: the gateway's ``GATEWAY_PLAYBACK_LEAD_MS`` / 1000.
    """
    if not arrivals:
        return []
    t0 = arrivals[0]
    return [t - (t0 + max(0.0, i * frame_s - lead_s)) for i, t in enumerate(arrivals)]


def realtime_ratio(bursts: Iterable[Sequence[float]], lead_s: float, frame_s: float = FRAME_S) -> float | None:
    """How fast agent audio arrived relative to real time over whole bursts (1.0: kept up).

    Σ ideal spans / Σ actual spans (first → last arrival), bursts too short to be paced skipped;
    below 1 the gateway delivered less than a second of audio per second.
    """
    ideal = actual = 0.0
    for arr in bursts:
        span = max(0.0, (len(arr) - 1) * frame_s - lead_s)
        if span <= 0 or len(arr) < 2:
            continue
        ideal += span
        actual += arr[-1] - arr[0]
    return ideal / actual if actual > 0 else None


# ---- Prometheus histograms ---------------------------------------------------------------------
def parse_histogram(metrics_text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts ``{le: count}`` of histogram ``name`` (no labels but ``le``)
    from a Prometheus text exposition; ``+Inf`` becomes ``math.inf``. Empty if absent."""
    out: dict[float, float] = {}
    for line in metrics_text.splitlines():
        m = _BUCKET.match(line)
        if m is None or m["name"] != name:
            continue
        le = _LE.search(m["labels"])
        if le is not None:
            out[math.inf if le["le"] == "+Inf" else float(le["le"])] = float(m["value"])
    return out


def bucket_delta(before: Mapping[float, float], after: Mapping[float, float]) -> dict[float, float]:
    """Cumulative counts observed between two scrapes (a bucket missing before counts from 0)."""
    return {le: count - before.get(le, 0.0) for le, count in after.items()}


def histogram_quantile(q: float, cumulative: Mapping[float, float]) -> float | None:
    """The ``q`` quantile (0..1) of cumulative buckets, as Prometheus' ``histogram_quantile``:
    linear within the bucket holding the rank, from 0 for the first; a rank in ``+Inf`` gives
    the highest finite bound. ``None`` with no observations."""
    bounds = sorted(cumulative)
    if not bounds:
        return None
    total = cumulative[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for le in bounds:
        count = cumulative[le]
        if count >= rank:
            if math.isinf(le):
                return lower
            if count == below:
                return le
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


# ---- summaries -------------------------------------------------------------------------------
def percentile(values: Sequence[float] | np.ndarray, q: float) -> float | None:
    """The ``q``-th percentile (0..100, numpy's linear interpolation); ``None`` when empty."""
    arr = np.asarray(values, dtype=float)
    return float(np.percentile(arr, q)) if arr.size else None


def overlap_s(start: float, end: float, window: tuple[float, float]) -> float:
    """Seconds of ``[start, end]`` inside ``window`` (same clock)."""
    return max(0.0, min(end, window[1]) - max(start, window[0]))


@dataclass(frozen=True)
class Variant:
    """One gateway configuration to measure: a name and extra ``GATEWAY_*`` (or any) env vars."""

    name: str
    env: dict[str, str] = field(default_factory=dict)


def parse_variant(text: str) -> Variant:
    """``NAME`` or ``NAME:ENV=VAL,ENV=VAL`` → :class:`Variant`.

    Raises:
        ValueError: no name, or an override without ``=``.
    """
    name, _, rest = text.partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"variant {text!r} has no name (NAME:ENV=VAL,...)")
    env: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"variant {name!r}: {item!r} is not ENV=VALUE")
        env[key.strip()] = value.strip()
    return Variant(name, env)


def parse_levels(text: str) -> list[int]:
    """``"25,50,100"`` → ``[25, 50, 100]`` (sorted, positive).

    Raises:
        ValueError: an empty list or a level < 1.
    """
    levels = sorted({int(p) for p in text.split(",") if p.strip()})
    if not levels or levels[0] < 1:
        raise ValueError(f"levels must be positive call counts, not {text!r}")
    return levels
