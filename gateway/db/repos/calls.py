"""Repository of calls, their turns and their extraction (inside the caller's session/transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from gateway.db.models import Call, Extraction, Turn, from_unix


class CallRepo:
    """Calls, turns and extractions."""

    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def get(self, call_sid: str, details: bool = False) -> Call | None:
        """The call (with turns and extraction loaded when ``details``), or ``None``."""
        stmt = select(Call).where(Call.call_sid == call_sid)
        if details:
            stmt = stmt.options(selectinload(Call.turns), selectinload(Call.extraction))
        return await self.s.scalar(stmt)

    async def start(
        self,
        call_sid: str,
        stream_sid: str,
        from_: str,
        to: str,
        agent_id: int | None,
        agent_name: str,
        started_at: datetime,
        status: str = "in-progress",
    ) -> Call:
        """Create the call row when the stream starts (an existing row is updated, not duplicated)."""
        call = await self.get(call_sid)
        if call is None:
            call = Call(call_sid=call_sid)
            self.s.add(call)
        call.stream_sid = stream_sid
        call.from_number, call.to_number = from_, to
        call.agent_id, call.agent_name = agent_id, agent_name
        call.started_at = started_at
        call.status = status
        await self.s.flush()
        return call

    async def finish(
        self,
        call_sid: str,
        *,
        stream_sid: str,
        from_: str,
        to: str,
        agent_id: int | None,
        agent_name: str,
        started_at: datetime,
        ended_at: datetime,
        status: str,
        turns: Sequence[dict[str, Any]],
        recording_path: str | None,
        extraction_status: str,
    ) -> Call:
        """Close the call: times, status, recording, extraction state, and its turns (replacing any).

        Args:
            turns: the session's turns in order (dicts with ``role``, ``text``, optional
                ``raw_text``, ``started_at``/``ended_at`` in Unix seconds, anything else).
        """
        call = await self.get(call_sid)
        if call is None:  # the start was never recorded (database briefly unavailable)
            call = Call(call_sid=call_sid, started_at=started_at)
            self.s.add(call)
        call.stream_sid = stream_sid
        call.from_number, call.to_number = from_, to
        call.agent_id, call.agent_name = agent_id, agent_name
        call.started_at, call.ended_at = started_at, ended_at
        call.duration_s = round((ended_at - started_at).total_seconds(), 3)
        call.status = status
        call.recording_path = recording_path
        call.extraction_status = extraction_status
        await self.s.flush()
        await self.s.execute(delete(Turn).where(Turn.call_id == call.id))
        for seq, turn in enumerate(turns):
            self.s.add(
                Turn(
                    call_id=call.id,
                    seq=seq,
                    role=str(turn.get("role", "")),
                    text=str(turn.get("text") or ""),
                    raw_text=turn.get("raw_text"),
                    started_at=_ts(turn.get("started_at")),
                    ended_at=_ts(turn.get("ended_at")),
                    data=dict(turn),
                )
            )
        await self.s.flush()
        return call

    async def page(
        self,
        limit: int = 50,
        offset: int = 0,
        agent_id: int | None = None,
        status: str | None = None,
        number: str | None = None,
    ) -> tuple[Sequence[Call], int]:
        """Newest calls first, filtered; returns (page, total matching)."""
        where = []
        if agent_id is not None:
            where.append(Call.agent_id == agent_id)
        if status is not None:
            where.append(Call.status == status)
        if number is not None:
            where.append(or_(Call.to_number == number, Call.from_number == number))
        total = await self.s.scalar(select(func.count()).select_from(Call).where(*where))
        rows = await self.s.scalars(
            select(Call).where(*where).order_by(Call.started_at.desc(), Call.id.desc()).limit(limit).offset(offset)
        )
        return rows.all(), int(total or 0)

    async def turns(self, call_id: int) -> Sequence[Turn]:
        """The call's turns in order."""
        return (await self.s.scalars(select(Turn).where(Turn.call_id == call_id).order_by(Turn.seq))).all()

    async def in_progress_before(self, started_before: datetime) -> Sequence[Call]:
        """Calls still ``in-progress`` that started before ``started_before`` (UTC): the orphan
        sweeper's database-only orphans."""
        stmt = select(Call).where(Call.status == "in-progress", Call.started_at < started_before)
        return (await self.s.scalars(stmt)).all()

    async def pending_extractions(self, limit: int = 10) -> Sequence[Call]:
        """Finished calls waiting for their extraction, oldest first."""
        stmt = (
            select(Call)
            .where(Call.extraction_status == "pending")
            .order_by(Call.ended_at, Call.id)
            .limit(limit)
            .options(selectinload(Call.turns))
        )
        return (await self.s.scalars(stmt)).all()

    async def save_extraction(
        self,
        call: Call,
        *,
        status: str,
        data: dict[str, Any] | None,
        raw: str | None,
        attempts: int,
        error: str | None,
        model: str | None,
        duration_ms: float | None,
    ) -> Extraction:
        """Store (or replace) the call's extraction and set ``call.extraction_status`` to done/failed."""
        row = await self.s.scalar(select(Extraction).where(Extraction.call_id == call.id))
        if row is None:
            row = Extraction(call_id=call.id, status=status)
            self.s.add(row)
        row.status, row.data, row.raw, row.attempts = status, data, raw, attempts
        row.error, row.model, row.duration_ms = error, model, duration_ms
        call.extraction_status = "done" if status == "ok" else "failed"
        await self.s.flush()
        return row

    async def request_extraction(self, call: Call) -> None:
        """Queue the call for (re-)extraction."""
        call.extraction_status = "pending"
        await self.s.flush()


def _ts(value: Any) -> datetime | None:
    try:
        return from_unix(float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None
