"""How fast Serve adds an STT replica under load, and how fast the new replica takes traffic.

An open-loop load (requests sent at a fixed rate, whatever the answers do, as calls arrive) of raw
PCM16 transcriptions goes through the Serve proxy of a local multi-node cluster
(:mod:`services.cluster.local`) to the STT application, autoscaled on ongoing requests. A watcher
polls ``serve.status()`` every 0.1 s. Reported, seconds from the load's start:

* ``starting_s``: the autoscaler asked for a second replica (first seen ``STARTING``);
* ``running_s``: it is ``RUNNING`` (its model loaded, its lifespan done);
* ``first_served_s``: the first answer it gave (the ``x-serve-replica`` header);
* ``take_traffic_s`` = first_served − starting: the time for a new replica to take traffic;
* ``back_to_one_s``: after the load stopped, the replicas are back to one.

    python -m bench.scale_bench --json docs/bench-scale.json      # make bench-scale
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from services.cluster.apps import REPLICA_HEADER

log = logging.getLogger("bench.scale")


@dataclass
class ScaleRun:
    """One load run: what the watcher saw and which replica answered when (seconds from the start)."""

    rate_hz: float
    seconds: float
    sent: int = 0
    ok: int = 0
    failed: int = 0
    first_served: dict[str, float] = field(default_factory=dict)
    """Replica id → when it first answered."""
    states: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    """(time, replica states) at every change."""

    def first_time(self, state: str, count: int = 1) -> float | None:
        """When the deployment first had ``count`` replicas in ``state`` (``STARTING``, ``RUNNING``)."""
        return next((t for t, s in self.states if s.get(state, 0) >= count), None)

    def summary(self) -> dict[str, Any]:
        """The figures of the module docstring (``None`` where it did not happen)."""
        served = sorted(self.first_served.values())
        starting, running = self.first_time("STARTING"), self.first_time("RUNNING", 2)
        second = served[1] if len(served) > 1 else None
        after = [t for t, s in self.states if t > self.seconds and sum(s.values()) == s.get("RUNNING", 0) == 1]
        return {
            "rate_hz": self.rate_hz,
            "load_s": self.seconds,
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "replicas_served": len(served),
            "starting_s": starting,
            "running_s": running,
            "first_served_s": second,
            "take_traffic_s": None if second is None or starting is None else round(second - starting, 2),
            "running_to_served_s": None if second is None or running is None else round(second - running, 2),
            "back_to_one_s": round(after[0] - self.seconds, 2) if after else None,
        }


def watch(app: str, run: ScaleRun, t0: float, stop: threading.Event, period_s: float = 0.1) -> None:
    """Record the deployment's replica states in ``run.states`` until ``stop`` (a thread)."""
    from ray import serve

    last: dict[str, int] | None = None
    while not stop.is_set():
        try:
            states = dict(serve.status().applications[app].deployments[app].replica_states)
        except (KeyError, AttributeError):
            states = {}
        if states != last:
            run.states.append((round(time.monotonic() - t0, 2), states))
            last = states
        time.sleep(period_s)


async def open_loop(url: str, pcm16: np.ndarray, rate_hz: float, seconds: float, run: ScaleRun, t0: float) -> None:
    """Send one transcription of ``pcm16`` (int16, 16 kHz) every ``1/rate_hz`` s for ``seconds``."""
    body = np.ascontiguousarray(pcm16, dtype="<i2").tobytes()
    params = {"sample_rate": 16000, "encoding": "pcm16"}

    async def one(client: httpx.AsyncClient) -> None:
        try:
            resp = await client.post(url + "/v1/audio/transcriptions/raw", params=params, content=body)
        except httpx.HTTPError:
            run.failed += 1
            return
        if resp.status_code != 200:
            run.failed += 1
            return
        run.ok += 1
        run.first_served.setdefault(resp.headers.get(REPLICA_HEADER, "?"), round(time.monotonic() - t0, 2))

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=200)) as client:
        tasks = []
        while (elapsed := time.monotonic() - t0) < seconds:
            tasks.append(asyncio.create_task(one(client)))
            run.sent += 1
            await asyncio.sleep(max(0.0, run.sent / rate_hz - elapsed))
        await asyncio.gather(*tasks)


def measure(url: str, pcm16: np.ndarray, rate_hz: float, seconds: float, settle_s: float, app: str = "stt") -> ScaleRun:
    """Run the load against ``url`` (the application's base URL), then watch ``settle_s`` more
    seconds for the scale-down; returns the run (this process must be connected to the cluster)."""
    run = ScaleRun(rate_hz, seconds)
    stop = threading.Event()
    t0 = time.monotonic()
    watcher = threading.Thread(target=watch, args=(app, run, t0, stop), daemon=True)
    watcher.start()
    try:
        asyncio.run(open_loop(url, pcm16, rate_hz, seconds, run, t0))
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            if run.states and run.states[-1][1] == {"RUNNING": 1} and run.states[-1][0] > seconds:
                break
            time.sleep(0.2)
    finally:
        stop.set()
        watcher.join(timeout=2)
    return run


def main() -> int:
    """Start a local cluster, deploy ``deploy/ray/serve.local.yaml``, measure, print (and write) the figures."""
    from services.cluster.local import LOCAL_CONFIG, LocalCluster, load_config
    from shared.audio import float_to_pcm16, read_audio
    from shared.config import models_dir
    from shared.logs import setup_logging
    from tools.stack import free_port

    setup_logging("bench")
    parser = argparse.ArgumentParser(description="Serve scale-up: time for a new STT replica to take traffic")
    parser.add_argument("--rate", type=float, default=4.0, help="transcriptions per second (open loop)")
    parser.add_argument("--seconds", type=float, default=25.0, help="load duration")
    parser.add_argument("--settle", type=float, default=40.0, help="how long to wait for the scale-down")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    audio, _ = read_audio(str(models_dir() / "audio" / "arctic_a0009.wav"), target_rate=16000)
    pcm = float_to_pcm16(audio)
    cluster = LocalCluster(nodes=3, port=free_port()).start()
    results = []
    try:
        apps = load_config(LOCAL_CONFIG)
        for i in range(args.runs):
            cluster.deploy(apps)
            run = measure(cluster.url + "/stt", pcm, args.rate, args.seconds, args.settle)
            results.append({**run.summary(), "states": run.states})
            log.info("run %d: %s", i + 1, json.dumps(run.summary()))
    finally:
        cluster.shutdown()
    if args.json:
        args.json.write_text(json.dumps({"runs": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
