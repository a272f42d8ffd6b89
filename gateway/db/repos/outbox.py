"""Repository of the webhook outbox and its delivery attempts.

An event is inserted in the same transaction as the change it reports (a transactional outbox),
so an event exists if and only if its call row does. Dispatchers *claim* due events with a lease
(a conditional ``UPDATE``, safe with several gateways on one database); a dispatcher killed
mid-delivery simply lets its lease expire and the event is sent again (at least once).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from gateway.db.models import OutboxEvent, WebhookDelivery, utcnow


def encode_body(payload: dict[str, Any]) -> str:
    """The canonical JSON text of a payload (compact, UTF-8, key order kept)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)


class OutboxRepo:
    """Outbox events and delivery attempts."""

    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def enqueue(
        self,
        event_type: str,
        payload: dict[str, Any],
        url: str,
        secret: str | None,
        call_sid: str | None = None,
        agent_id: int | None = None,
        held: bool = False,
    ) -> OutboxEvent:
        """Add an event; ``payload`` gains ``event_id`` (the idempotency key) and ``event``.

        Args:
            held: keep it back until :meth:`release_held` (e.g. until the extraction is done).
        """
        event_id = str(uuid.uuid4())
        body = {"event": event_type, "event_id": event_id, **payload}
        body["event"], body["event_id"] = event_type, event_id
        row = OutboxEvent(
            event_id=event_id,
            event_type=event_type,
            call_sid=call_sid,
            agent_id=agent_id,
            url=url,
            secret=secret or None,
            body=encode_body(body),
            status="held" if held else "pending",
            attempts=0,
            next_attempt_at=utcnow(),
        )
        self.s.add(row)
        await self.s.flush()
        return row

    async def release_held(self, call_sid: str, extra: dict[str, Any]) -> int:
        """Merge ``extra`` into the call's held events' bodies and make them due now; returns how many."""
        rows = (
            await self.s.scalars(
                select(OutboxEvent).where(OutboxEvent.call_sid == call_sid, OutboxEvent.status == "held")
            )
        ).all()
        for row in rows:
            row.body = encode_body({**json.loads(row.body), **extra})
            row.status = "pending"
            row.next_attempt_at = utcnow()
        await self.s.flush()
        return len(rows)

    async def release_stale_held(self, older_than: datetime) -> int:
        """Release events held since before ``older_than`` as they are (a safety net); returns how many."""
        result = await self.s.execute(
            update(OutboxEvent)
            .where(OutboxEvent.status == "held", OutboxEvent.created_at < older_than)
            .values(status="pending", next_attempt_at=utcnow())
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def due_ids(self, now: datetime, limit: int) -> list[int]:
        """Ids of events that are due and not leased, soonest first."""
        stmt = (
            select(OutboxEvent.id)
            .where(
                OutboxEvent.status == "pending",
                OutboxEvent.next_attempt_at <= now,
                or_(OutboxEvent.lease_until.is_(None), OutboxEvent.lease_until < now),
            )
            .order_by(OutboxEvent.next_attempt_at, OutboxEvent.id)
            .limit(limit)
        )
        return list((await self.s.scalars(stmt)).all())

    async def claim(self, event_id: int, owner: str, now: datetime, lease: timedelta) -> OutboxEvent | None:
        """Lease one due event for ``owner`` and count the attempt it is claimed for; ``None`` if another
        dispatcher got it first.

        ``attempts`` is incremented here, in the claim's transaction, before anything is sent: a
        dispatcher killed mid-send has already used that attempt, so the resend after its lease
        expires says ``X-Switchboard-Attempt: 2``, not ``1`` again (and counts toward the limit).
        """
        result = await self.s.execute(
            update(OutboxEvent)
            .where(
                OutboxEvent.id == event_id,
                OutboxEvent.status == "pending",
                or_(OutboxEvent.lease_until.is_(None), OutboxEvent.lease_until < now),
            )
            .values(lease_until=now + lease, lease_owner=owner, attempts=OutboxEvent.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != 1:
            return None
        return await self.s.scalar(
            select(OutboxEvent).where(OutboxEvent.id == event_id).execution_options(populate_existing=True)
        )

    async def record_attempt(
        self,
        event_id: int,
        *,
        attempt: int,
        started_at: datetime,
        duration_ms: float,
        status_code: int | None,
        error: str | None,
        success: bool,
        next_attempt_at: datetime | None,
    ) -> None:
        """Log one attempt and move the event on: delivered, due again at ``next_attempt_at``, or failed
        (``next_attempt_at`` ``None`` after an unsuccessful last attempt)."""
        self.s.add(
            WebhookDelivery(
                outbox_id=event_id,
                attempt=attempt,
                started_at=started_at,
                duration_ms=duration_ms,
                status_code=status_code,
                error=error,
                success=success,
            )
        )
        values: dict[str, Any] = {
            "attempts": attempt,
            "lease_until": None,
            "lease_owner": None,
            "last_status_code": status_code,
            "last_error": error,
        }
        if success:
            values.update(status="delivered", delivered_at=utcnow())
        elif next_attempt_at is None:
            values.update(status="failed")
        else:
            values.update(status="pending", next_attempt_at=next_attempt_at)
        # A delivered event stays delivered even if a slower duplicate attempt fails afterwards.
        await self.s.execute(
            update(OutboxEvent)
            .where(and_(OutboxEvent.id == event_id, OutboxEvent.status != "delivered"))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        await self.s.flush()

    async def for_call(self, call_sid: str) -> Sequence[OutboxEvent]:
        """A call's events with their delivery attempts, oldest first."""
        stmt = (
            select(OutboxEvent)
            .where(OutboxEvent.call_sid == call_sid)
            .order_by(OutboxEvent.id)
            .options(selectinload(OutboxEvent.deliveries))
        )
        return (await self.s.scalars(stmt)).all()

    async def get(self, event_id: int) -> OutboxEvent | None:
        """One event with its attempts."""
        return await self.s.scalar(
            select(OutboxEvent).where(OutboxEvent.id == event_id).options(selectinload(OutboxEvent.deliveries))
        )

    async def retry_now(self, row: OutboxEvent) -> None:
        """Make a pending or failed event due now (an operator's retry)."""
        if row.status in ("pending", "failed"):
            row.status, row.next_attempt_at, row.lease_until = "pending", utcnow(), None
            await self.s.flush()

    async def counts(self) -> dict[str, int]:
        """Events by status."""
        rows = await self.s.execute(select(OutboxEvent.status, func.count()).group_by(OutboxEvent.status))
        return {status: int(n) for status, n in rows.all()}
