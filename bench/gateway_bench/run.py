"""``make bench-gateway``: what one gateway process costs per call, with every upstream faked.

Starts a Redis of its own and the fakes (:mod:`bench.gateway_bench.fakes`: STT, streamed TTS, LLM
with fixed latencies, the real Smart Turn behind ``/v1/turn``) on free ports, then per variant
**one** gateway process (``python -m gateway``: database, recording and extraction off, everything
else as deployed), and per level N simulated Twilio calls from K load-generator processes
(:mod:`bench.gateway_bench.caller`: real speech, real pauses, barge-ins). Calls start spread over
``--ramp-s``; after ``--warmup-s`` more (greetings over) comes the steady window of ``--duration``
seconds, and only the window is measured:

* CPU-s per call-minute of the gateway, the fakes and the load generators (``/proc/<pid>/stat``);
* event-loop lag p50/p99 (``gateway_event_loop_lag_seconds``, buckets scraped before and after);
* outbound frame jitter p99 at the callers — how late each agent frame arrived against the pacer's
  schedule (early frames, sent inside the pacer's ``lead + tick`` window on purpose, count 0 here
  and are reported apart as ``early_ms``) — and the realtime ratio of whole replies ("kept up");
* the gateway's RSS (max of 2 Hz samples), its endpointing times (``GET /calls/{sid}`` records);
* calls that failed, reply time-outs, barge-ins.

``--gateway-cpus 0 --others-cpus 1`` pins the gateway and everything else (fakes, Redis, load
generators) to separate CPUs (``taskset``), so the gateway's loop lag is its own, not the load
generator's or the turn model's.

With ``--profile``, the heaviest level runs ``--profile-s`` longer and py-spy records the gateway
then (after the window, so the profiler does not weigh on the measured numbers).

Usage: ``python -m bench.gateway_bench.run --levels 25,50,100 --duration 60 --json docs/bench-gateway.json
--plot docs/bench-gateway.png [--variant before:GATEWAY_X=1 --variant after:GATEWAY_X=2] [--profile]``
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from bench.gateway_bench import measure as m
from bench.gateway_bench import profile as prof
from bench.gateway_bench.caller import CallPlan, CallStats, load_utterances, worker
from bench.gateway_bench.fakes import FakeLatencies
from bench.gateway_bench.report import plot, report_table
from shared.config import PROJECT_ROOT, models_dir
from tools.stack import Ports, Service, Stack, admin_key, free_port

log = logging.getLogger("bench.gateway")
LOOP_LAG = "gateway_event_loop_lag_seconds"


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def gateway_env(fakes_url: str, redis_port: int, port: int, data_dir: str, extra: dict[str, str]) -> dict[str, str]:
    """The gateway's settings for the bench: upstreams at the fakes, no database/recording/extraction."""
    return {
        "GATEWAY_PORT": str(port),
        "GATEWAY_STT_URL": fakes_url,
        "GATEWAY_TTS_URL": fakes_url,
        "GATEWAY_LLM_URL": fakes_url + "/v1",
        "GATEWAY_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "GATEWAY_DATABASE_ENABLED": "false",
        "GATEWAY_RECORDING_ENABLED": "false",
        "GATEWAY_EXTRACTION_ENABLED": "false",
        "GATEWAY_TWILIO_AUTH_TOKEN": "",
        "GATEWAY_ADMIN_API_KEY": admin_key(),
        "GATEWAY_DATA_DIR": data_dir,
        **extra,
    }


class Bench:
    """One run: Redis and the fakes for its whole life, a gateway per variant."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.log_dir = Path(args.log_dir)
        shutil.rmtree(self.log_dir, ignore_errors=True)
        self.data_dir = tempfile.mkdtemp(prefix="bench-gateway-")
        ports = Ports(redis=free_port())
        self.infra = Stack(ports, reuse=False, log_dir=self.log_dir, webhook_sink=False, only={"redis"})
        self.fakes_port = free_port()
        lat = FakeLatencies(args.stt_ms, args.llm_ttft_ms, args.llm_token_ms, args.tts_first_ms, args.ms_per_char)
        self.latencies = lat
        argv = [sys.executable, "-m", "bench.gateway_bench.fakes", "--port", str(self.fakes_port)]
        for key, value in asdict(lat).items():
            argv += ["--" + key.replace("_", "-"), str(value)]
        self.infra.services.append(Service("fakes", argv, self.fakes_port))
        self.fakes_url = f"http://127.0.0.1:{self.fakes_port}"
        self.utterances = load_utterances([models_dir() / "audio" / name for name in args.audio])
        self.clock_offset = time.time() - time.monotonic()

    def pid(self, stack: Stack, name: str) -> int:
        proc = stack.service(name).proc
        assert proc is not None
        return proc.pid

    def run(self, variants: list[m.Variant], levels: list[int]) -> dict[str, Any]:
        """Every variant × level; returns the report (also printed as a table)."""
        report: dict[str, Any] = {"meta": self.meta(levels), "variants": []}
        self.infra.start(timeout_s=120)
        try:
            pin(self.pid(self.infra, "fakes"), self.args.others_cpus)
            pin(self.pid(self.infra, "redis"), self.args.others_cpus)
            report["meta"]["fakes"] = httpx.get(self.fakes_url + "/stats", timeout=5).json()
            for variant in variants:
                report["variants"].append(self.run_variant(variant, levels))
        finally:
            self.infra.stop()
            shutil.rmtree(self.data_dir, ignore_errors=True)
        return report

    def meta(self, levels: list[int]) -> dict[str, Any]:
        a = self.args
        return {
            "host": f"{platform.node()} ({os.cpu_count()} CPUs, {platform.machine()})",
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "levels": levels,
            "duration_s": a.duration,
            "ramp_s": a.ramp_s,
            "warmup_s": a.warmup_s,
            "processes": a.processes,
            "gateway_cpus": a.gateway_cpus,
            "others_cpus": a.others_cpus,
            "audio": a.audio,
            "barge_every": a.barge_every,
            "latencies_ms": asdict(self.latencies),
            "load_average_at_start": list(os.getloadavg()),
        }

    def run_variant(self, variant: m.Variant, levels: list[int]) -> dict[str, Any]:
        port = free_port()
        env = gateway_env(self.fakes_url, self.infra.ports.redis, port, self.data_dir, variant.env)
        gw = Stack(
            Ports(gateway=port), reuse=False, log_dir=self.log_dir / variant.name, webhook_sink=False, only=set()
        )
        gw.services.append(Service("gateway", [sys.executable, "-m", "gateway"], port, env))
        lead_s = float(env.get("GATEWAY_PLAYBACK_LEAD_MS", "100")) / 1000
        _out(f"## variant {variant.name} {variant.env or ''}")
        gw.start(timeout_s=120)
        pin(self.pid(gw, "gateway"), self.args.gateway_cpus)
        out: dict[str, Any] = {"name": variant.name, "env": variant.env, "levels": []}
        try:
            for n in levels:
                profile_s = self.args.profile_s if self.args.profile and n == levels[-1] else 0.0
                lv = self.run_level(variant, n, f"http://127.0.0.1:{port}", self.pid(gw, "gateway"), lead_s, profile_s)
                out["levels"].append(lv)
                _out(report_table({"variants": [{"name": variant.name, "levels": [lv]}]}).splitlines()[-1])
                if n != levels[-1]:
                    time.sleep(3)  # the calls' ends settle before the next level
        finally:
            gw.stop()
        return out

    def run_level(
        self, variant: m.Variant, n: int, url: str, gw_pid: int, lead_s: float, profile_s: float
    ) -> dict[str, Any]:
        a = self.args
        ramp = min(a.ramp_s, 0.2 * n)
        t_start = time.monotonic() + 2.0
        window = (t_start + ramp + a.warmup_s, t_start + ramp + a.warmup_s + a.duration)
        stop_at = window[1] + profile_s
        plans = [
            CallPlan(i, url, t_start + ramp * i / n, stop_at, window, lead_s, seed=i, barge_every=a.barge_every)
            for i in range(n)
        ]
        k = max(1, min(a.processes, n))
        ctx = mp.get_context("spawn")
        results: Any = ctx.Queue()
        workers = [ctx.Process(target=worker, args=(plans[p::k], self.utterances, results)) for p in range(k)]
        for w in workers:
            w.start()
            if w.pid:
                pin(w.pid, a.others_cpus)
        fakes_pid = self.pid(self.infra, "fakes")
        pids = {"gateway": [gw_pid], "fakes": [fakes_pid], "loadgen": [w.pid for w in workers if w.pid]}
        _sleep_until(window[0])
        before = {role: {p: m.cpu_seconds(p) for p in ps} for role, ps in pids.items()}
        lag_before = m.parse_histogram(_scrape(url), LOOP_LAG)
        stats_before = httpx.get(self.fakes_url + "/stats", timeout=5).json()
        rss = _RssSampler(gw_pid)
        rss.start()
        _sleep_until(window[1])
        after = {role: {p: m.cpu_seconds(p) for p in ps} for role, ps in pids.items()}
        lag_after = m.parse_histogram(_scrape(url), LOOP_LAG)
        stats_after = httpx.get(self.fakes_url + "/stats", timeout=5).json()
        rss.stop()
        profile_error = None
        if profile_s:
            stem = Path(a.profile_out + ("" if len(a.variant or []) <= 1 else f"-{variant.name}"))
            _out(f"profiling the gateway for {profile_s:.0f} s (py-spy) → {stem}.svg/.txt")
            profile_error = prof.record(gw_pid, profile_s - 2, stem.with_suffix(".svg"), stem.with_suffix(".txt"))
            if profile_error:
                _out(profile_error)
        calls: list[CallStats] = []
        for _ in workers:
            calls += results.get(timeout=stop_at - time.monotonic() + 120)
        for w in workers:
            w.join(timeout=30)
        records = _records(url, [c.call_sid for c in calls if c.call_sid])
        cpu = {role: m.cpu_delta(before[role], after[role]) for role in pids}
        fakes_delta = {k: v - stats_before.get(k, 0) for k, v in stats_after.items() if isinstance(v, int)}
        unix_window = (window[0] + self.clock_offset, window[1] + self.clock_offset)
        return summarize_level(n, window, unix_window, calls, cpu, rss.max_mib, lag_before, lag_after, records) | {
            "fakes_requests": fakes_delta,
            "profile_error": profile_error,
        }


def summarize_level(
    n: int,
    window: tuple[float, float],
    unix_window: tuple[float, float],
    calls: list[CallStats],
    cpu: dict[str, float],
    rss_max: float | None,
    lag_before: dict[float, float],
    lag_after: dict[float, float],
    records: list[dict[str, Any]],
) -> dict[str, Any]:
    """One level's JSON summary from the callers' stats, CPU deltas, lag buckets and turn records."""
    duration = window[1] - window[0]
    call_min = sum(m.overlap_s(c.connected_at, c.ended_at, window) for c in calls if c.connected_at and c.ended_at) / 60
    lag = m.bucket_delta(lag_before, lag_after)
    deviations = [d for c in calls for d in c.deviations_s]
    ideal, actual = sum(c.ideal_span_s for c in calls), sum(c.actual_span_s for c in calls)
    endpointing = [
        float(t["latency_ms"]["endpointing_ms"])
        for rec in records
        for t in rec.get("turns", [])
        if t.get("role") == "assistant"
        and "endpointing_ms" in t.get("latency_ms", {})
        and unix_window[0] <= float(t.get("started_at", 0)) <= unix_window[1]
    ]
    failed = [c for c in calls if c.error]

    def per_call_min(role: str) -> dict[str, float | None]:
        return {
            "cpu_s": round(cpu[role], 2),
            "cpu_s_per_call_min": cpu[role] / call_min if call_min else None,
            "cores": cpu[role] / duration,
        }

    def ms(values: list[float], *qs: int) -> dict[str, float | int | None]:
        out: dict[str, float | int | None] = {"n": len(values)}
        for q in qs:
            v = m.percentile(values, q)
            out[f"p{q}"] = None if v is None else round(v, 1)
        return out

    realtime = ideal / actual if actual > 0 else None
    lag_p = {f"p{q}": _ms(m.histogram_quantile(q / 100, lag)) for q in (50, 99)}
    return {
        "calls": n,
        "window_s": round(duration, 1),
        "call_minutes": round(call_min, 2),
        "gateway": per_call_min("gateway") | {"rss_mib_max": rss_max},
        "fakes": per_call_min("fakes"),
        "loadgen": per_call_min("loadgen"),
        "loop_lag_ms": lag_p | {"n": int(max(lag.values(), default=0))},
        "jitter_ms": ms([max(0.0, d) * 1000 for d in deviations], 50, 99),
        "early_ms": ms([max(0.0, -d) * 1000 for d in deviations], 50, 99),
        "realtime": realtime,
        "kept_up": not failed and realtime is not None and realtime >= 0.97,
        "send_lag_ms": ms([s * 1000 for c in calls for s in c.send_lag_s], 99),
        "endpointing_ms": ms(endpointing, 50, 95),
        "caller_v2v_ms": ms([v for c in calls for v in c.caller_v2v_ms], 50, 95),
        "calls_ok": n - len(failed),
        "calls_failed": len(failed),
        "errors": sorted({c.error for c in failed if c.error})[:5],
        "lines_spoken": sum(c.lines_spoken for c in calls),
        "barge_ins": sum(c.barge_ins for c in calls),
        "clears": sum(c.clears for c in calls),
        "replies": sum(c.replies for c in calls),
        "reply_timeouts": sum(c.reply_timeouts for c in calls),
        "agent_frames_in_window": sum(c.frames_in_window for c in calls),
    }


def pin(pid: int, cpus: str | None) -> None:
    """Move every thread of ``pid`` onto ``cpus`` (a ``taskset -c`` list such as ``"0"`` or ``"1-3"``);
    threads it starts later inherit it. No-op when ``cpus`` is None.

    Raises:
        subprocess.CalledProcessError: ``taskset`` refused (no such CPU, no permission).
    """
    if cpus:
        subprocess.run(["taskset", "-a", "-cp", cpus, str(pid)], check=True, capture_output=True)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.monotonic()))


def _scrape(url: str) -> str:
    return httpx.get(url + "/metrics", timeout=10).text


def _records(url: str, call_sids: list[str]) -> list[dict[str, Any]]:
    """The gateway's records of the calls (``GET /calls/{sid}``); one that cannot be read is skipped."""
    out = []
    with httpx.Client(headers={"X-Admin-Key": admin_key()}, timeout=10) as client:
        for sid in call_sids:
            try:
                resp = client.get(f"{url}/calls/{sid}")
            except httpx.HTTPError:
                continue
            if resp.status_code == 200:
                out.append(resp.json())
    return out


class _RssSampler:
    """Max RSS of a process, sampled at 2 Hz in a thread between :meth:`start` and :meth:`stop`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.max_mib: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:
            value = m.rss_mib(self.pid)
            if value is not None:
                self.max_mib = value if self.max_mib is None else max(self.max_mib, value)
            if self._stop.wait(0.5):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        if self.max_mib is not None:
            self.max_mib = round(self.max_mib, 1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--levels", default="25,50,100", help="concurrent calls per level, comma-separated")
    p.add_argument("--duration", type=float, default=60.0, help="steady window per level, seconds")
    p.add_argument("--ramp-s", type=float, default=10.0, help="call starts spread over this long (≤ 0.2 s per call)")
    p.add_argument("--warmup-s", type=float, default=10.0, help="after the ramp, before the window (greetings)")
    p.add_argument("--variant", action="append", help="NAME[:ENV=VAL,ENV=VAL] (repeatable; default 'current')")
    p.add_argument("--processes", type=int, default=2, help="load-generator processes")
    p.add_argument("--gateway-cpus", default=None, help="taskset CPU list for the gateway (e.g. 0)")
    p.add_argument("--others-cpus", default=None, help="taskset CPU list for fakes, Redis, load generators (e.g. 1)")
    p.add_argument("--barge-every", type=int, default=3, help="every n-th caller line talks over the reply")
    p.add_argument("--audio", nargs="+", default=["caller_leak.wav", "arctic_a0009.wav"], help="in models/audio")
    p.add_argument("--profile", action="store_true", help="py-spy the gateway at the heaviest level")
    p.add_argument("--profile-s", type=float, default=30.0, help="how long py-spy records")
    p.add_argument("--profile-out", default=str(PROJECT_ROOT / "docs" / "bench-gateway-profile"), help="path stem")
    p.add_argument("--json", type=Path, help="write the report here")
    p.add_argument("--plot", type=Path, help="write the PNG plot here")
    p.add_argument("--log-dir", default=str(PROJECT_ROOT / "var" / "bench-gateway"), help="service logs")
    lat = FakeLatencies()
    for key in asdict(lat):
        p.add_argument("--" + key.replace("_", "-"), type=float, default=getattr(lat, key), help="fake latency")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 unless it could not run at all."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    levels = m.parse_levels(args.levels)
    variants = [m.parse_variant(v) for v in args.variant] if args.variant else [m.Variant("current")]
    report = Bench(args).run(variants, levels)
    _out()
    _out(report_table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
        _out(f"wrote {args.json}")
    if args.plot:
        plot(report, args.plot)
        _out(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
