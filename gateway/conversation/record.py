"""One call's record, kept in memory and mirrored to Redis by one writer that survives outages.

The session is the source of truth for its own call: :class:`CallRecord` holds the call's fields,
turn state, turns and actions; the database row and the ``call.completed`` webhook are built from
it, so a Redis outage never loses a turn from them. :class:`RecordWriter` applies the record's
changes to Redis in order. When a write fails (Redis down, restarted, or slow past the socket
timeout) it stops replaying single operations and, once Redis answers again, writes the whole
record at once (:meth:`~gateway.conversation.store.CallStore.replace_call`): a restarted Redis that kept nothing
gets the turns spoken during the outage back, with no duplicates.

It is stopped with a sentinel and a bounded wait (:meth:`RecordWriter.close`), never by relying on
a cancel alone (see :mod:`gateway.conversation.tasks`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.conversation.deps import LiveCallStore
from gateway.conversation.tasks import wait_bounded
from gateway.metrics import ERRORS

log = logging.getLogger(__name__)

_Op = Callable[[], Awaitable[None]]


@dataclass
class CallRecord:
    """What the gateway knows of one call (times are Unix seconds)."""

    call_sid: str
    stream_sid: str
    from_: str
    to: str
    started_at: float
    gateway_id: str = ""
    state: str = "listening"
    status: str = "in-progress"
    ended_at: float | None = None
    turns: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)

    def meta(self) -> dict[str, Any]:
        """The Redis hash fields (see :mod:`gateway.conversation.store`)."""
        return {
            "call_sid": self.call_sid,
            "stream_sid": self.stream_sid,
            "from": self.from_,
            "to": self.to,
            "status": self.status,
            "state": "ended" if self.ended_at is not None else self.state,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "gateway": self.gateway_id,
        }


class RecordWriter:
    """Applies a :class:`CallRecord`'s changes to Redis, in order, from one task.

    Args:
        store: the Redis call store.
        record: the call's record (changed only through this writer's methods).
        retry_s: first wait before retrying after a failed write (doubles up to 2 s).
    """

    def __init__(self, store: LiveCallStore, record: CallRecord, retry_s: float = 0.25) -> None:
        self.store = store
        self.record = record
        self.retry_s = retry_s
        self._ops: asyncio.Queue[_Op | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.synced = asyncio.Event()
        """Set whenever Redis holds everything queued so far (cleared on every change)."""
        self.failures = 0

    # ---- changes -----------------------------------------------------------------
    def start(self) -> None:
        """Write the new call (and start the writer task)."""
        r = self.record
        self._put(lambda: self.store.start_call(r.call_sid, r.stream_sid, r.from_, r.to, r.started_at, r.gateway_id))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"redis-writer:{r.call_sid}")

    def set_state(self, state: str) -> None:
        """Record the turn state (listening/user_speaking/thinking/speaking)."""
        self.record.state = state
        self._put(lambda: self.store.set_state(self.record.call_sid, state))

    def append_turn(self, turn: dict[str, Any]) -> None:
        """Append a turn (JSON-serialisable, with at least ``role`` and ``text``)."""
        self.record.turns.append(turn)
        self._put(lambda: self.store.append_turn(self.record.call_sid, turn))

    def append_action(self, action: dict[str, Any]) -> None:
        """Record a tool action."""
        self.record.actions.append(action)
        self._put(lambda: self.store.append_action(self.record.call_sid, action))

    def end(self, ended_at: float, status: str = "completed") -> None:
        """Close the call (status ``completed`` or what went wrong)."""
        self.record.ended_at, self.record.status = ended_at, status
        self._put(lambda: self.store.end_call(self.record.call_sid, ended_at, status))

    def _put(self, op: _Op) -> None:
        self.synced.clear()
        self._ops.put_nowait(op)

    # ---- the writer ----------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            if self._ops.empty():
                self.synced.set()
            op = await self._ops.get()
            if op is None:
                return
            try:
                await op()
            except Exception as exc:  # Redis down degrades the live record, never the call
                self._failed(exc)
                if await self._resync():
                    return

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        ERRORS.labels("redis").inc()
        log.error(
            "call %s: Redis write failed (%r); will rewrite the call once Redis answers", self.record.call_sid, exc
        )

    async def _resync(self) -> bool:
        """Retry until the whole record is written; returns whether the stop sentinel was seen."""
        delay = self.retry_s
        stop = False
        while True:
            await asyncio.sleep(delay)
            while not self._ops.empty():  # the snapshot below includes every queued change
                stop = stop or self._ops.get_nowait() is None
            r = self.record
            try:
                await self.store.replace_call(r.meta(), list(r.turns), list(r.actions))
            except Exception as exc:
                ERRORS.labels("redis").inc()
                log.debug("call %s: Redis still unavailable: %r", r.call_sid, exc)
                delay = min(delay * 2, 2.0)
                continue
            log.info(
                "call %s: Redis record rewritten (%d turns) after %d failure(s)",
                r.call_sid,
                len(r.turns),
                self.failures,
            )
            return stop

    async def close(self, timeout_s: float) -> bool:
        """Apply what is queued and stop, waiting at most ``timeout_s`` seconds.

        Returns:
            ``True`` if Redis holds the whole record; ``False`` if the bound ran out (the record
            is still complete in memory: the database and the webhook are built from it).
        """
        if self._task is None:
            return True
        self._ops.put_nowait(None)
        t0 = time.monotonic()
        ended = await wait_bounded(self._task, timeout_s)
        if not ended or self._task.cancelled():
            log.error(
                "call %s: Redis writer stopped after %.1fs with writes pending",
                self.record.call_sid,
                time.monotonic() - t0,
            )
            return False
        return True
