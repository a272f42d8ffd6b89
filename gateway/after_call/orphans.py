"""Calls whose gateway died: a sweeper that finishes them.

Every gateway process has an id and keeps ``sb:gateway:<id>`` alive in Redis (TTL
``GATEWAY_REDIS__HEARTBEAT_TTL_S``, refreshed three times per TTL, by :mod:`gateway.fleet.registry`);
each live call's record names the gateway serving it (a gateway that resumes a call takes it
over). :class:`CallSweeper` (every gateway runs one: at start-up, then every
``GATEWAY_REDIS__ORPHAN_SWEEP_INTERVAL_S``) looks at the active calls in Redis; a call whose gateway's
heartbeat has expired was cut off by a crash (kill -9, OOM, a lost host): one sweeper claims it,
closes it in Redis with status ``gateway-lost`` and hands it to the hooks like any finished call,
so the database row is closed and ``call.completed`` is sent, saying so.

With the database on, calls still ``in-progress`` in the database past the longest possible call
(``GATEWAY_CALL__MAX_CALL_SECONDS`` + 60 s) are finished the same way: their Redis record is gone (a
Redis restart keeps nothing), so only the database knew them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC as _UTC
from typing import TYPE_CHECKING, Any, Protocol

from gateway.agents.profile import AgentDirectory, CallSummary
from gateway.conversation.store import CallStore
from gateway.db.models import from_unix
from gateway.db.repos import CallRepo
from gateway.metrics import ERRORS, ORPHANS

if TYPE_CHECKING:
    from gateway.db.engine import Database

log = logging.getLogger(__name__)

LOST_STATUS = "gateway-lost"
"""Status of a call finished by the sweeper (its gateway stopped mid-call)."""


class CallFinisher(AgentDirectory, Protocol):
    """What finishes a call no session finished: the agent for its number again, then the hooks'
    ``call_ended`` (both hook implementations, :class:`~gateway.agents.static.SettingsHooks` and
    :class:`~gateway.after_call.runtime.DatabaseHooks`, are one)."""

    async def call_ended(self, summary: CallSummary) -> None:
        """Keep the finished call (row, webhook); never raises."""
        ...


def new_gateway_id() -> str:
    """A unique id for this gateway process: ``<host>-<pid>-<8 hex>``."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class CallSweeper:
    """The finisher of dead gateways' calls.

    Args:
        store: the Redis call store.
        hooks: what finishes a call (database row, ``call.completed``).
        gateway_id: this process's id (:func:`new_gateway_id`).
        sweep_interval_s: how often to look for orphans, seconds.
        db_sweep: optional coroutine factory finishing database-only orphans (see module doc).
    """

    def __init__(
        self,
        store: CallStore,
        hooks: CallFinisher,
        gateway_id: str,
        sweep_interval_s: float = 5.0,
        db_sweep: Callable[[], Any] | None = None,
    ) -> None:
        self.store = store
        self.hooks = hooks
        self.gateway_id = gateway_id
        self.sweep_interval_s = sweep_interval_s
        self.db_sweep = db_sweep
        self._tasks: list[asyncio.Task[None]] = []
        self.finished: list[str] = []
        """CallSids this sweeper finished (newest last)."""

    def start(self) -> None:
        """Start the sweep loop."""
        self._tasks = [asyncio.get_running_loop().create_task(self._sweep_loop(), name="orphan-sweeper")]

    async def stop(self) -> None:
        """Stop the loop (bounded wait)."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)

    async def _sweep_loop(self) -> None:
        if self.db_sweep is not None:
            try:
                await self.db_sweep()
            except Exception:
                ERRORS.labels("database").inc()
                log.exception("sweeping the database's unfinished calls failed")
        while True:
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("orphan sweep failed: %r", exc)
            await asyncio.sleep(self.sweep_interval_s)

    async def sweep(self) -> list[str]:
        """Finish every active call whose gateway is dead; returns their CallSids."""
        done: list[str] = []
        for call_sid in sorted(await self.store.active_calls()):
            record = await self.store.get_call(call_sid)
            if record is None or record.get("status") != "in-progress":
                continue
            owner = str(record.get("gateway") or "")
            if owner == self.gateway_id or await self.store.gateway_alive(owner):
                continue
            if not await self.store.claim_sweep(call_sid):
                continue  # another gateway's sweeper has it
            await self._finish(record)
            done.append(call_sid)
        return done

    async def _finish(self, record: dict[str, Any]) -> None:
        call_sid = str(record["call_sid"])
        ended_at = time.time()
        turns = list(record.get("turns") or [])
        last = max((float(t.get("ended_at") or 0) for t in turns), default=0.0)
        ended_at = max(last, float(record.get("started_at") or 0)) or ended_at
        await self.store.end_call(call_sid, ended_at, LOST_STATUS)
        log.warning("call %s: its gateway %s is gone; finished as %s", call_sid, record.get("gateway"), LOST_STATUS)
        ORPHANS.inc()
        self.finished.append(call_sid)
        await finish_call(
            self.hooks,
            call_sid=call_sid,
            stream_sid=str(record.get("stream_sid") or ""),
            from_=str(record.get("from") or ""),
            to=str(record.get("to") or ""),
            started_at=float(record.get("started_at") or ended_at),
            ended_at=ended_at,
            turns=turns,
            status=LOST_STATUS,
        )


async def finish_call(
    hooks: CallFinisher,
    *,
    call_sid: str,
    stream_sid: str,
    from_: str,
    to: str,
    started_at: float,
    ended_at: float,
    turns: list[dict[str, Any]],
    status: str,
) -> None:
    """Hand a call no session finished to the hooks (the agent is resolved again from ``to``)."""
    try:
        profile = await hooks.resolve(to)
    except Exception:
        ERRORS.labels("database").inc()
        log.exception("call %s: no agent for %s; finishing with the settings agent", call_sid, to)
        profile = None
    if profile is None:
        return
    summary = CallSummary(call_sid, stream_sid, from_, to, started_at, ended_at, turns, profile, status=status)
    with contextlib.suppress(Exception):
        await hooks.call_ended(summary)


async def sweep_database(db: Database, hooks: CallFinisher, store: CallStore, older_than_s: float) -> list[str]:
    """Finish database calls still ``in-progress`` that started more than ``older_than_s`` ago.

    Their turns come from Redis when it still has them (else the call is closed with none).

    Returns:
        The CallSids finished.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database could not be read.
    """
    cutoff = from_unix(time.time() - older_than_s)
    assert cutoff is not None
    async with db.sessions() as s:
        rows = await CallRepo(s).in_progress_before(cutoff)
        calls = [(c.call_sid, c.stream_sid or "", c.from_number or "", c.to_number or "", c.started_at) for c in rows]
    done = []
    for call_sid, stream_sid, from_, to, started in calls:
        record: dict[str, Any] | None = None
        with contextlib.suppress(Exception):
            record = await store.get_call(call_sid)
        turns = list((record or {}).get("turns") or [])
        started_at = started.timestamp() if started.tzinfo else started.replace(tzinfo=_UTC).timestamp()
        last = max((float(t.get("ended_at") or 0) for t in turns), default=0.0)
        log.warning(
            "call %s: still in progress in the database after %.0fs; finished as %s",
            call_sid,
            older_than_s,
            LOST_STATUS,
        )
        ORPHANS.inc()
        await finish_call(
            hooks,
            call_sid=call_sid,
            stream_sid=stream_sid,
            from_=from_,
            to=to,
            started_at=started_at,
            ended_at=max(last, started_at),
            turns=turns,
            status=LOST_STATUS,
        )
        done.append(call_sid)
    return done
