"""Pods, $/month and $ per client for a call-volume profile, from the measured calls per GPU.

The model (telephony's classic sizing, with the measured capacity of one GPU pod):

1. **Offered load** in erlangs (concurrent calls on average) per hour: the peak hour carries
   ``peak_hour_share`` of a day's calls, the other business hours share the rest evenly;
   erlangs = calls in the hour × minutes per call / 60.
2. **Call slots** for that load: the fewest slots whose Erlang B blocking (a call arriving when
   all are busy) is at most ``--blocking`` (1 %), computed with the standard recursion
   B(0) = 1, B(c) = A·B(c−1) / (c + A·B(c−1)) (Erlang, 1917; ITU-T E.501 sizing).
3. **Pods** = ceil(slots / calls per GPU), at least ``--min-pods`` (the cluster config's
   ``min_workers``). Calls per GPU: the highest level of the capacity run whose respond p95 met
   ``--target-ms`` (``docs/bench-capacity-h100.json``, ``make bench`` on the GPU; docs/benchmarks.md),
   its $/hour the run's ``usd_per_hour`` unless given.
4. **$/month** = GPU-hours × $/hour + warm spares' storage (``--standby`` stopped pods ×
   ``--volume-gb`` × ``--stopped-usd-per-gb-month``) + the CPU host of the gateways, Redis and the
   Ray head (``--host-usd-per-month``). Scaling up and down follows the hours: a stopped spare
   starts in 30–60 s, well inside an hour's ramp.

    python scripts/cost_model.py --clients 50 --calls-per-day 30 --minutes-per-call 3 --peak-hour-share 0.2
    make cost ARGS='--clients 200'
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CAPACITY = ROOT / "docs" / "bench-capacity-h100.json"


def erlang_b(load_erlangs: float, slots: int) -> float:
    """Erlang B blocking probability of ``slots`` servers offered ``load_erlangs`` (recursive form)."""
    b = 1.0
    for c in range(1, slots + 1):
        b = load_erlangs * b / (c + load_erlangs * b)
    return b


def slots_for(load_erlangs: float, blocking: float) -> int:
    """The fewest call slots whose Erlang B blocking is at most ``blocking`` (0 for no load)."""
    if load_erlangs <= 0:
        return 0
    slots = 1
    while erlang_b(load_erlangs, slots) > blocking:
        slots += 1
    return slots


def measured_capacity(path: Path, target_ms: float, design: str = "ours") -> tuple[int, float, str]:
    """(calls per GPU, $/hour, host) from a capacity run: the highest level whose respond p95 met ``target_ms``.

    Raises:
        ValueError: no level of ``design`` met the target.
    """
    run = json.loads(path.read_text())
    levels = next(d for d in run["designs"] if d["design"] == design)["levels"]
    ok = [lv["calls"] for lv in levels if lv["respond_ms"]["p95"] <= target_ms and not lv.get("failed_calls")]
    if not ok:
        raise ValueError(f"no level of {design!r} in {path.name} met {target_ms} ms")
    return max(ok), float(run.get("usd_per_hour") or 0.0), str(run.get("host", ""))


@dataclass
class Profile:
    """A call-volume profile (per client) and the business day it falls in."""

    clients: int
    calls_per_day: float
    minutes_per_call: float
    peak_hour_share: float
    business_hours: int = 10
    days_per_month: float = 30.0


@dataclass
class Estimate:
    """What the profile costs (USD)."""

    peak_erlangs: float
    peak_slots: int
    peak_pods: int
    offpeak_pods: int
    night_pods: int
    gpu_hours_per_day: float
    gpu_usd_per_month: float
    standby_usd_per_month: float
    host_usd_per_month: float
    usd_per_month: float
    usd_per_client_month: float
    usd_per_call: float
    usd_per_call_minute: float


def estimate(
    p: Profile,
    calls_per_gpu: int,
    usd_per_hour: float,
    *,
    blocking: float = 0.01,
    min_pods: int = 1,
    standby: int = 1,
    volume_gb: float = 60.0,
    stopped_usd_per_gb_month: float = 0.20,
    host_usd_per_month: float = 0.0,
) -> Estimate:
    """Size and price ``p`` (see the module docstring).

    Raises:
        ValueError: a share outside (0, 1], no business hours or no capacity.
    """
    if not 0 < p.peak_hour_share <= 1 or p.business_hours < 1 or calls_per_gpu < 1:
        raise ValueError("peak_hour_share must be in (0, 1], business_hours ≥ 1, calls_per_gpu ≥ 1")
    day_calls = p.clients * p.calls_per_day
    peak = day_calls * p.peak_hour_share * p.minutes_per_call / 60
    other_hours = max(p.business_hours - 1, 1)
    offpeak = day_calls * (1 - p.peak_hour_share) / other_hours * p.minutes_per_call / 60

    def pods(load: float) -> int:
        return max(math.ceil(slots_for(load, blocking) / calls_per_gpu), min_pods)

    peak_pods, offpeak_pods, night_pods = pods(peak), pods(offpeak), min_pods
    hours = peak_pods + offpeak_pods * (p.business_hours - 1) + night_pods * (24 - p.business_hours)
    gpu = hours * usd_per_hour * p.days_per_month
    storage = standby * volume_gb * stopped_usd_per_gb_month
    total = gpu + storage + host_usd_per_month
    month_calls = day_calls * p.days_per_month
    return Estimate(
        peak_erlangs=round(peak, 2),
        peak_slots=slots_for(peak, blocking),
        peak_pods=peak_pods,
        offpeak_pods=offpeak_pods,
        night_pods=night_pods,
        gpu_hours_per_day=hours,
        gpu_usd_per_month=round(gpu, 2),
        standby_usd_per_month=round(storage, 2),
        host_usd_per_month=round(host_usd_per_month, 2),
        usd_per_month=round(total, 2),
        usd_per_client_month=round(total / p.clients, 2) if p.clients else 0.0,
        usd_per_call=round(total / month_calls, 4) if month_calls else 0.0,
        usd_per_call_minute=round(total / (month_calls * p.minutes_per_call), 4) if month_calls else 0.0,
    )


def main(argv: list[str] | None = None) -> int:
    """Print the estimate (``--json``: as JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="businesses served")
    parser.add_argument("--calls-per-day", type=float, default=30, help="calls per client per day")
    parser.add_argument("--minutes-per-call", type=float, default=3.0)
    parser.add_argument("--peak-hour-share", type=float, default=0.2, help="share of a day's calls in its busiest hour")
    parser.add_argument("--business-hours", type=int, default=10, help="hours a day the calls come in")
    parser.add_argument("--blocking", type=float, default=0.01, help="Erlang B: share of calls allowed to find no slot")
    parser.add_argument("--target-ms", type=float, default=500, help="respond p95 a GPU must hold (capacity run)")
    parser.add_argument("--capacity", type=Path, default=CAPACITY, help="capacity run JSON (make bench on the GPU)")
    parser.add_argument("--calls-per-gpu", type=int, default=None, help="override the measured calls per GPU")
    parser.add_argument("--usd-per-hour", type=float, default=None, help="override the run's GPU price")
    parser.add_argument("--min-pods", type=int, default=1, help="pods always up (cluster.yaml min_workers)")
    parser.add_argument("--standby", type=int, default=1, help="stopped warm spares (cluster.yaml min_standby)")
    parser.add_argument("--volume-gb", type=float, default=60.0, help="a pod's volume (models, weights)")
    parser.add_argument("--stopped-usd-per-gb-month", type=float, default=0.20, help="storage of a stopped pod")
    parser.add_argument("--host-usd-per-month", type=float, default=0.0, help="the gateways' CPU host")
    parser.add_argument("--json", action="store_true")
    a = parser.parse_args(argv)
    calls, usd, host = measured_capacity(a.capacity, a.target_ms)
    calls = a.calls_per_gpu or calls
    usd = a.usd_per_hour if a.usd_per_hour is not None else usd
    profile = Profile(a.clients, a.calls_per_day, a.minutes_per_call, a.peak_hour_share, a.business_hours)
    est = estimate(
        profile,
        calls,
        usd,
        blocking=a.blocking,
        min_pods=a.min_pods,
        standby=a.standby,
        volume_gb=a.volume_gb,
        stopped_usd_per_gb_month=a.stopped_usd_per_gb_month,
        host_usd_per_month=a.host_usd_per_month,
    )
    if a.json:
        sys.stdout.write(
            json.dumps({"profile": asdict(profile), "calls_per_gpu": calls, "usd_per_hour": usd, **asdict(est)}) + "\n"
        )
        return 0
    lines = [
        f"capacity    : {calls} calls per GPU pod at respond p95 ≤ {a.target_ms:.0f} ms "
        f"({host or a.capacity.name}), ${usd:.2f}/h",
        f"profile     : {a.clients} clients × {a.calls_per_day:g} calls/day × {a.minutes_per_call:g} min, "
        f"{a.peak_hour_share:.0%} in the peak hour, {a.business_hours} business hours",
        f"peak hour   : {est.peak_erlangs} erlangs → {est.peak_slots} call slots at {a.blocking:.0%} blocking",
        f"pods        : {est.peak_pods} at peak, {est.offpeak_pods} other business hours, {est.night_pods} at night, "
        f"+{a.standby} stopped spare(s) ({est.gpu_hours_per_day:g} GPU-hours/day)",
        f"$ / month   : {est.usd_per_month:,.2f} (GPU {est.gpu_usd_per_month:,.2f}, spares' storage "
        f"{est.standby_usd_per_month:,.2f}, host {est.host_usd_per_month:,.2f})",
        f"$ per client: {est.usd_per_client_month:,.2f} / month; $ {est.usd_per_call:.4f} per call, "
        f"$ {est.usd_per_call_minute:.4f} per call-minute",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
