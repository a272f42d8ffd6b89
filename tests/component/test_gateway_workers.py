"""``GATEWAY_WORKERS=2``: two gateway processes on one port, one database migration, summed metrics.

A real ``python -m gateway`` (uvicorn workers) with its own Redis and a SQLite file. Malformed
Media Streams messages are counted by whichever worker accepted the WebSocket; ``/metrics``,
served by one worker, must report all of them.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from redis import Redis

from gateway.db.migrate import head
from tools.stack import Ports, Stack

pytestmark = pytest.mark.timeout(240)

WORKERS = 2
SOCKETS = 12


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("workers")
    env = {
        "GATEWAY_WORKERS": str(WORKERS),
        "GATEWAY_DATA_DIR": str(tmp / "data"),
        "GATEWAY_TURN_DETECTION": "silence",
        "GATEWAY_RECORDING_ENABLED": "false",
        "GATEWAY_EXTRACTION_ENABLED": "false",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
    }
    s = Stack(Ports.free(), reuse=False, log_dir=tmp / "logs", env=env, webhook_sink=False, only={"redis", "gateway"})
    try:
        s.start(timeout_s=180)
    except RuntimeError as exc:
        pytest.fail(f"gateway did not start: {exc}\n{(tmp / 'logs' / 'gateway.log').read_text()[-3000:]}")
    s.tmp = tmp  # type: ignore[attr-defined]
    yield s
    s.stop()


def _heartbeats(stack: Stack) -> list[str]:
    redis = Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        return [str(k) for k in redis.scan_iter("sb:gateway:*")]
    finally:
        redis.close()


def test_each_worker_is_a_live_gateway_and_the_database_was_migrated_once(stack: Stack) -> None:
    deadline = time.monotonic() + 30
    keys = _heartbeats(stack)
    while len(keys) < WORKERS and time.monotonic() < deadline:
        time.sleep(0.5)
        keys = _heartbeats(stack)
    pids = {k.rsplit("-", 2)[-2] for k in keys}  # gateway id: <host>-<pid>-<random>
    assert len(pids) == WORKERS, keys
    gateway = stack.service("gateway")
    assert gateway.proc is not None and str(gateway.proc.pid) not in pids  # workers, not the supervisor
    db = sqlite3.connect(Path(stack.tmp) / "data" / "switchboard.db")  # type: ignore[attr-defined]
    try:
        assert db.execute("select version_num from alembic_version").fetchall() == [(head(),)]
    finally:
        db.close()
    log = (Path(stack.tmp) / "logs" / "gateway.log").read_text()  # type: ignore[attr-defined]
    assert "Traceback" not in log, log[-3000:]


async def _send_malformed(url: str) -> None:
    async with websockets.connect(url) as ws:
        await ws.send("{not json")
        await ws.send('{"event": "connected", "protocol": "Call", "version": "1.0.0"}')
        await asyncio.sleep(0.3)  # the worker reads both before the socket closes


def _malformed_total(stack: Stack) -> float:
    body = httpx.get(f"{stack.gateway_url}/metrics", timeout=5).text
    lines = [ln for ln in body.splitlines() if ln.startswith("gateway_malformed_frames_total")]
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)


def test_metrics_sum_every_worker(stack: Stack) -> None:
    before = _malformed_total(stack)
    url = stack.gateway_url.replace("http", "ws") + "/twilio/stream"

    async def main() -> None:
        await asyncio.gather(*(_send_malformed(url) for _ in range(SOCKETS)))

    asyncio.run(main())
    files = {p.name for p in Path(stack.tmp, "metrics").iterdir()}  # type: ignore[attr-defined]
    assert any(name.startswith("counter_") for name in files), files
    for _ in range(5):  # every scrape, whichever worker serves it, reports all the sockets' messages
        assert _malformed_total(stack) - before == SOCKETS
