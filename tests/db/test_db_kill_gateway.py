"""Kill -9 the gateway with webhook deliveries in flight, restart it: every event arrives, none is lost,
and repeats carry the same idempotency key (at-least-once from the durable outbox)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from dbtest_support import Process, WebhookReceiver, documented_verifier, free_port, start_service

from gateway.after_call.runtime import DatabaseHooks
from gateway.agents.profile import CallSummary
from gateway.config import GatewaySettings
from gateway.db.engine import Database
from gateway.db.migrate import upgrade
from gateway.db.repos import AgentRepo, NumberRepo, OutboxRepo

SECRET = "kill-test-secret-42"
ADMIN_KEY = "admin-key-for-the-kill-test"
CALLS = 6


async def seed(url: str, data_dir: Path, hook_url: str) -> list[str]:
    """Six finished calls to an agent with a webhook: 12 events pending in the outbox."""
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    async with db.sessions() as s, s.begin():
        agent = await AgentRepo(s).create(name="Acme", greeting="Hi", system_prompt="p", voice="af_heart",
                                          webhook_url=hook_url, webhook_secret=SECRET)  # fmt: skip
        await NumberRepo(s).create("+15550100002", agent.id)
    hooks = DatabaseHooks(GatewaySettings(data_dir=str(data_dir), extraction_enabled=False), db)
    for i in range(CALLS):
        sid = f"CAkill{i}"
        profile = await hooks.profile_for(sid, "+15550100001", "+15550100002")
        now = time.time()
        turns = [{"role": "user", "text": f"call number {i}"}]
        await hooks.call_ended(CallSummary(sid, f"MZ{i}", "+15550100001", "+15550100002", now - 5, now, turns, profile))
    async with db.sessions() as s:
        rows = [e for i in range(CALLS) for e in await OutboxRepo(s).for_call(f"CAkill{i}")]
    await db.dispose()
    return [r.event_id for r in rows]


def gateway(env: dict[str, str], port: int, log: Path) -> Process:
    return start_service("gateway", env, port, log, timeout_s=120)


def stats(port: int) -> dict[str, int]:
    resp = httpx.get(f"http://127.0.0.1:{port}/api/webhooks/stats", headers={"X-Admin-Key": ADMIN_KEY}, timeout=5)
    resp.raise_for_status()
    return dict(resp.json())


@pytest.mark.timeout(180)
def test_killed_gateway_delivers_everything_after_restart(tmp_path: Path) -> None:
    release = threading.Event()
    receiver = WebhookReceiver(hold=release)
    receiver.start()
    url = f"sqlite+aiosqlite:///{tmp_path / 'switchboard.db'}"
    event_ids = asyncio.run(seed(url, tmp_path, receiver.url))
    assert len(event_ids) == 2 * CALLS
    port = free_port()
    env = {
        "GATEWAY_PORT": str(port),
        "GATEWAY_DATABASE_URL": url,
        "GATEWAY_DATA_DIR": str(tmp_path),
        "GATEWAY_ADMIN_API_KEY": ADMIN_KEY,
        "GATEWAY_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "GATEWAY_WEBHOOK_TIMEOUT_S": "2",
        "GATEWAY_OUTBOX_BACKOFF_BASE_S": "0.5",
        "GATEWAY_OUTBOX_POLL_INTERVAL_S": "0.2",
        "GATEWAY_EXTRACTION_ENABLED": "false",
        "GATEWAY_TURN_DETECTION": "silence",
    }
    first = gateway(env, port, tmp_path / "gateway-1.log")
    try:
        assert receiver.arrived.wait(30), f"no delivery started:\n{first.tail()}"
        time.sleep(0.5)  # let the dispatcher put more requests in flight
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(timeout=10)
        assert first.proc.returncode == -signal.SIGKILL
    finally:
        first.stop()
    release.set()  # the receiver now answers requests whose sender is dead
    time.sleep(0.3)
    in_flight = set(receiver.keys())
    assert in_flight, "the kill did not catch any delivery in flight"
    assert len(in_flight) < len(event_ids), "everything was in flight: the restart would prove nothing"

    second = gateway(env, port, tmp_path / "gateway-2.log")
    try:
        deadline = time.monotonic() + 60
        while stats(port) != {"delivered": len(event_ids)}:
            assert time.monotonic() < deadline, f"not all delivered: {stats(port)}\n{second.tail()}"
            time.sleep(0.2)
    finally:
        second.stop()
        receiver.stop()

    bodies: dict[str, set[bytes]] = defaultdict(set)
    for got in receiver.received:
        bodies[got.headers["idempotency-key"]].add(got.body)
        assert documented_verifier()(SECRET, got.headers, got.body)
        assert json.loads(got.body)["event_id"] == got.headers["idempotency-key"]
    assert set(bodies) == set(event_ids)  # none lost
    assert all(len(b) == 1 for b in bodies.values())  # a repeat is the same event, byte for byte
    keys = receiver.keys()
    repeated = {k for k in keys if keys.count(k) > 1}
    assert repeated == in_flight  # exactly the deliveries cut short by the kill were sent again
    assert all(keys.count(k) <= 2 for k in keys)
