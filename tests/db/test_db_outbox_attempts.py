"""The attempt counter is stored when a delivery is claimed, before the send: a gateway that dies
mid-send has used that attempt, so the resend says ``X-Switchboard-Attempt: 2``, not ``1`` again."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
from dbtest_support import WebhookReceiver

from gateway.after_call.outbox import OutboxDispatcher, OutboxPolicy
from gateway.db.engine import Database
from gateway.db.repos import OutboxRepo

# timeout 2 s: the lease (one attempt + margin) runs out 4 s after the claim
POLICY = OutboxPolicy(max_attempts=6, backoff_base_s=0.2, backoff_max_s=1.0, timeout_s=2.0, poll_interval_s=0.1)


async def test_a_resend_after_a_crash_mid_send_counts_the_lost_attempt(db: Database) -> None:
    release = threading.Event()
    receiver = WebhookReceiver(hold=release)
    receiver.start()
    async with db.sessions() as s, s.begin():
        event = await OutboxRepo(s).enqueue(
            "call.completed", {"call_sid": "CA1"}, receiver.url, "whsec-0123456789", "CA1"
        )
    try:
        async with httpx.AsyncClient() as client:
            first = OutboxDispatcher(db, client, POLICY)
            assert await first.dispatch_due() == 1
            assert await asyncio.to_thread(receiver.arrived.wait, 10), "the first attempt never arrived"
            async with db.sessions() as s:
                row = await OutboxRepo(s).get(event.id)
            assert row is not None and row.attempts == 1 and row.lease_owner == first.owner  # counted before the send
            await first.stop()  # the gateway dies mid-send: its attempt is never recorded
            release.set()  # the receiver answers a sender that is gone

            second = OutboxDispatcher(db, client, POLICY)  # the restarted gateway, once the lease ran out
            second.start()
            try:
                deadline = time.monotonic() + 20
                while True:
                    async with db.sessions() as s:
                        row = await OutboxRepo(s).get(event.id)
                    assert row is not None
                    if row.status == "delivered":
                        break
                    assert time.monotonic() < deadline, "the event was not sent again"
                    await asyncio.sleep(0.1)
            finally:
                await second.stop()
    finally:
        receiver.stop()
    assert receiver.keys() == [event.event_id] * 2
    assert [int(r.headers["x-switchboard-attempt"]) for r in receiver.received] == [1, 2]
    assert row.attempts == 2 and [d.attempt for d in row.deliveries] == [2]
