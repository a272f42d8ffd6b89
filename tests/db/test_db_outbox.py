"""The webhook outbox: signatures (checked with docs/webhooks.md's own snippet), retries, leases."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import httpx
from dbtest_support import WebhookReceiver, documented_verifier

from gateway.after_call.outbox import OutboxDispatcher, OutboxPolicy, backoff_s, sign, verify
from gateway.db.engine import Database
from gateway.db.repos import OutboxRepo

SECRET = "whsec-test-0123456789"
FAST = OutboxPolicy(max_attempts=6, backoff_base_s=0.2, backoff_max_s=1.0, timeout_s=2.0, poll_interval_s=0.1)


async def enqueue(db: Database, n: int = 1, url: str = "", secret: str | None = SECRET, **kw: Any) -> list[str]:
    async with db.sessions() as s, s.begin():
        repo = OutboxRepo(s)
        rows = [await repo.enqueue("call.completed", {"call_sid": f"CA{i}", "n": i}, url, secret, f"CA{i}", **kw)
                for i in range(n)]  # fmt: skip
        return [r.event_id for r in rows]


async def wait_for(predicate: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def test_documented_snippet_verifies_our_signature() -> None:
    verify_webhook = documented_verifier()
    body = b'{"event":"call.completed","event_id":"e1"}'
    ts = int(time.time())
    headers = {"X-Switchboard-Timestamp": str(ts), "X-Switchboard-Signature": sign(SECRET, ts, body)}
    assert verify_webhook(SECRET, headers, body)
    assert verify(SECRET, str(ts), body, headers["X-Switchboard-Signature"])
    assert not verify_webhook(SECRET, headers, body + b" ")  # tampered body
    assert not verify_webhook("another-secret", headers, body)
    old = ts - 3600
    stale = {"X-Switchboard-Timestamp": str(old), "X-Switchboard-Signature": sign(SECRET, old, body)}
    assert not verify_webhook(SECRET, stale, body)  # a replay an hour later
    assert not verify(SECRET, str(old), body, stale["X-Switchboard-Signature"])


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    delays = [backoff_s(n, 2.0, 60.0, jitter=0.0) for n in range(1, 8)]
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    for _ in range(50):
        assert 1.6 <= backoff_s(1, 2.0, 60.0) <= 2.4


async def test_receiver_down_then_back_gets_the_event_once_signed(db: Database) -> None:
    receiver = WebhookReceiver()
    [event_id] = await enqueue(db, url=receiver.url)
    async with httpx.AsyncClient() as client:
        dispatcher = OutboxDispatcher(db, client, FAST)
        dispatcher.start()
        try:

            async def failed_twice() -> bool:
                async with db.sessions() as s:
                    return len((await OutboxRepo(s).for_call("CA0"))[0].deliveries) >= 2

            await wait_for(failed_twice)  # nothing listens: connection refused, retried
            receiver.start()

            async def delivered() -> bool:
                async with db.sessions() as s:
                    return (await OutboxRepo(s).for_call("CA0"))[0].status == "delivered"

            await wait_for(delivered)
        finally:
            await dispatcher.stop()
            receiver.stop()
    assert receiver.keys() == [event_id]
    got = receiver.received[0]
    assert documented_verifier()(SECRET, got.headers, got.body)
    assert got.json()["event_id"] == event_id and got.json()["n"] == 0
    assert got.headers["x-switchboard-event"] == "call.completed"
    async with db.sessions() as s:
        [row] = await OutboxRepo(s).for_call("CA0")
    attempts = row.deliveries
    assert [d.attempt for d in attempts] == list(range(1, len(attempts) + 1))
    assert all(not d.success and d.error for d in attempts[:-1]) and attempts[-1].success
    assert attempts[-1].status_code == 204 and row.attempts == len(attempts) >= 3
    assert int(got.headers["x-switchboard-attempt"]) == len(attempts)
    gaps = [(b.started_at - a.started_at).total_seconds() for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.15  # backed off, not hammering


async def test_error_statuses_are_retried_and_give_up_after_max_attempts(db: Database) -> None:
    receiver = WebhookReceiver(fail_first=2)
    receiver.start()
    bad = WebhookReceiver()  # never started: always refused
    ok_id, = await enqueue(db, url=receiver.url)  # fmt: skip
    async with db.sessions() as s, s.begin():
        dead = await OutboxRepo(s).enqueue("call.started", {}, bad.url, None, "CA-dead")
    policy = OutboxPolicy(max_attempts=3, backoff_base_s=0.1, backoff_max_s=0.2, timeout_s=2.0, poll_interval_s=0.1)
    async with httpx.AsyncClient() as client:
        dispatcher = OutboxDispatcher(db, client, policy)
        dispatcher.start()
        try:

            async def settled() -> bool:
                async with db.sessions() as s:
                    return (await OutboxRepo(s).counts()) == {"delivered": 1, "failed": 1}

            await wait_for(settled)
        finally:
            await dispatcher.stop()
            receiver.stop()
    assert receiver.keys() == [ok_id]
    async with db.sessions() as s:
        [ok_row] = await OutboxRepo(s).for_call("CA0")
        [dead_row] = await OutboxRepo(s).for_call("CA-dead")
    assert [d.status_code for d in ok_row.deliveries] == [503, 503, 204]
    assert len(dead_row.deliveries) == 3 and dead_row.status == "failed" and dead.secret is None
    assert "x-switchboard-signature" in receiver.received[0].headers


async def test_held_events_wait_for_release(db: Database) -> None:
    receiver = WebhookReceiver()
    receiver.start()
    [event_id] = await enqueue(db, url=receiver.url, held=True)
    async with httpx.AsyncClient() as client:
        dispatcher = OutboxDispatcher(db, client, FAST)
        dispatcher.start()
        try:
            await asyncio.sleep(0.6)
            assert receiver.received == []
            async with db.sessions() as s, s.begin():
                assert await OutboxRepo(s).release_held("CA0", {"extraction": {"caller_name": "Ann"}}) == 1
            dispatcher.wake()

            async def arrived() -> bool:
                return len(receiver.received) == 1

            await wait_for(arrived)
        finally:
            await dispatcher.stop()
            receiver.stop()
    body = receiver.received[0].json()
    assert body["event_id"] == event_id and body["extraction"] == {"caller_name": "Ann"}
    assert documented_verifier()(SECRET, receiver.received[0].headers, receiver.received[0].body)


async def test_two_dispatchers_on_one_database_deliver_each_event_once(db: Database) -> None:
    receiver = WebhookReceiver()
    receiver.start()
    ids = await enqueue(db, 12, url=receiver.url)
    async with httpx.AsyncClient() as client:
        dispatchers = [OutboxDispatcher(db, client, FAST) for _ in range(2)]
        for d in dispatchers:
            d.start()
        try:

            async def all_delivered() -> bool:
                async with db.sessions() as s:
                    return (await OutboxRepo(s).counts()) == {"delivered": 12}

            await wait_for(all_delivered)
        finally:
            for d in dispatchers:
                await d.stop()
            receiver.stop()
    assert sorted(receiver.keys()) == sorted(ids)  # no event twice
    assert {json.loads(r.body)["event_id"] for r in receiver.received} == set(ids)


async def test_events_without_secret_are_unsigned(db: Database) -> None:
    receiver = WebhookReceiver()
    receiver.start()
    await enqueue(db, url=receiver.url, secret=None)
    async with httpx.AsyncClient() as client:
        dispatcher = OutboxDispatcher(db, client, FAST)
        dispatcher.start()
        try:

            async def arrived() -> bool:
                return len(receiver.received) == 1

            await wait_for(arrived)
        finally:
            await dispatcher.stop()
            receiver.stop()
    headers = receiver.received[0].headers
    assert "x-switchboard-signature" not in headers and "idempotency-key" in headers
