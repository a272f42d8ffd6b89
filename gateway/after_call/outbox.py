"""Signed webhooks from the durable outbox: at-least-once delivery with exponential backoff.

Every POST carries (see docs/webhooks.md)::

    Content-Type: application/json
    X-Switchboard-Event: call.completed
    X-Switchboard-Timestamp: 1767225600                  (Unix seconds of this attempt)
    X-Switchboard-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>   (when a secret is set)
    Idempotency-Key: <event_id>                          (the same on every attempt of one event)
    X-Switchboard-Attempt: 1

A 2xx answer delivers the event; anything else (or no answer within the timeout) schedules the
next attempt after ``base · 2^(attempt-1)`` seconds (±20 % jitter, capped), until
``max_attempts``, after which the event is marked ``failed`` (visible and retryable in the admin API).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import httpx

from gateway.db.engine import Database
from gateway.db.models import OutboxEvent, utcnow
from gateway.db.repos import OutboxRepo
from gateway.metrics import ERRORS, WEBHOOKS

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Switchboard-Signature"
TIMESTAMP_HEADER = "X-Switchboard-Timestamp"
EVENT_HEADER = "X-Switchboard-Event"
ATTEMPT_HEADER = "X-Switchboard-Attempt"
IDEMPOTENCY_HEADER = "Idempotency-Key"
SIGNATURE_VERSION = "v1"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value: ``v1=`` + hex HMAC-SHA256 of ``f"{timestamp}.".encode() + body``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, tolerance_s: float = 300, now: float | None = None
) -> bool:
    """Check a received webhook: the signature matches and the timestamp is within ``tolerance_s``.

    Args:
        timestamp: the ``X-Switchboard-Timestamp`` header; signature: ``X-Switchboard-Signature``.
    """
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature.strip())


def backoff_s(
    attempt: int, base_s: float, max_s: float, jitter: float = 0.2, rng: random.Random | None = None
) -> float:
    """Delay before attempt ``attempt + 1`` after ``attempt`` failures: ``base·2^(attempt-1)`` ± jitter, ≤ ``max_s``."""
    delay = min(base_s * (2 ** max(attempt - 1, 0)), max_s)
    spread = delay * jitter
    return max(0.0, min(max_s, delay + (rng or random).uniform(-spread, spread)))


@dataclass(frozen=True)
class OutboxPolicy:
    """Retry and timing policy of the dispatcher (seconds)."""

    max_attempts: int = 12
    backoff_base_s: float = 2.0
    backoff_max_s: float = 600.0
    timeout_s: float = 5.0
    poll_interval_s: float = 1.0
    concurrency: int = 8
    """Deliveries in flight at once (only that many events are leased at a time)."""
    held_timeout_s: float = 600.0
    """Events held for an extraction longer than this are sent without it."""

    @property
    def lease(self) -> timedelta:
        """How long a claimed event stays with its dispatcher: one attempt plus a margin."""
        return timedelta(seconds=self.timeout_s * 1.5 + 1.0)


class OutboxDispatcher:
    """Background task delivering due outbox events.

    Args:
        db: the database holding the outbox.
        client: an ``httpx.AsyncClient`` (redirects are not followed).
        policy: retries and timing.
    """

    def __init__(self, db: Database, client: httpx.AsyncClient, policy: OutboxPolicy | None = None) -> None:
        self.db = db
        self.client = client
        self.policy = policy or OutboxPolicy()
        self.owner = f"gw-{uuid.uuid4().hex[:12]}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sem = asyncio.Semaphore(self.policy.concurrency)
        self._inflight: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Start the loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="outbox-dispatcher")

    def wake(self) -> None:
        """Look for due events now (call after enqueueing)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop the loop and cancel attempts in flight (their leases expire; they are sent again later)."""
        tasks = [t for t in (self._task, *self._inflight) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=5.0)
            if stuck:
                log.warning("outbox: %d task(s) did not stop within 5 s", len(stuck))

    async def _run(self) -> None:
        while True:
            try:
                await self.dispatch_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be briefly unavailable: keep polling
                ERRORS.labels("webhook").inc()
                log.exception("outbox: dispatch pass failed")
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation racing the event.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.policy.poll_interval_s):
                    await self._wake.wait()
            self._wake.clear()

    async def dispatch_due(self) -> int:
        """Claim due events and start their deliveries; returns how many were claimed."""
        now = utcnow()
        claimed: list[OutboxEvent] = []
        async with self.db.sessions() as s, s.begin():
            repo = OutboxRepo(s)
            await repo.release_stale_held(now - timedelta(seconds=self.policy.held_timeout_s))
            free = self.policy.concurrency - len(self._inflight)
            for event_id in await repo.due_ids(now, max(free, 0)):
                row = await repo.claim(event_id, self.owner, now, self.policy.lease)
                if row is not None:
                    claimed.append(row)
        for row in claimed:
            task = asyncio.create_task(self._deliver(row), name=f"webhook-{row.event_id}")
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        return len(claimed)

    async def _deliver(self, row: OutboxEvent) -> None:
        async with self._sem:
            attempt = row.attempts  # counted by the claim, already committed (see OutboxRepo.claim)
            body = row.body.encode()
            ts = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "Switchboard-Webhooks/1",
                EVENT_HEADER: row.event_type,
                TIMESTAMP_HEADER: str(ts),
                IDEMPOTENCY_HEADER: row.event_id,
                ATTEMPT_HEADER: str(attempt),
            }
            if row.secret:
                headers[SIGNATURE_HEADER] = sign(row.secret, ts, body)
            started = utcnow()
            t0 = time.monotonic()
            status_code: int | None = None
            error: str | None = None
            try:
                resp = await self.client.post(
                    row.url, content=body, headers=headers, timeout=self.policy.timeout_s, follow_redirects=False
                )
                status_code = resp.status_code
                if not 200 <= resp.status_code < 300:
                    error = f"HTTP {resp.status_code}: {resp.text[:200]}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
            duration_ms = (time.monotonic() - t0) * 1000
            success = error is None
            WEBHOOKS.labels("delivered" if success else "error").inc()
            next_at = None
            if not success and attempt < self.policy.max_attempts:
                delay = backoff_s(attempt, self.policy.backoff_base_s, self.policy.backoff_max_s)
                next_at = utcnow() + timedelta(seconds=delay)
            if success:
                log.info("webhook %s %s delivered (attempt %d)", row.event_type, row.event_id, attempt)
            elif next_at is None:
                ERRORS.labels("webhook").inc()
                log.error(
                    "webhook %s %s failed for good after %d attempts: %s", row.event_type, row.event_id, attempt, error
                )
            else:
                log.warning("webhook %s %s attempt %d failed: %s", row.event_type, row.event_id, attempt, error)
            async with self.db.sessions() as s, s.begin():
                await OutboxRepo(s).record_attempt(
                    row.id,
                    attempt=attempt,
                    started_at=started,
                    duration_ms=duration_ms,
                    status_code=status_code,
                    error=error,
                    success=success,
                    next_attempt_at=next_at,
                )
            if next_at is not None:
                asyncio.get_running_loop().call_later(
                    max((next_at - utcnow()).total_seconds(), 0.0) + 0.01, self._wake.set
                )

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) for the attempts in flight."""
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=timeout_s)
