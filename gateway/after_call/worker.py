"""The post-call worker: extractions in the background, then the calls' held webhook events released.

A finished call that needs an extraction is stored ``pending`` (with its ``call.completed`` event
held in the outbox) by :mod:`gateway.after_call.ledger`; :class:`PostCallWorker` picks the oldest
one, asks the LLM (:class:`~gateway.after_call.extraction.Extractor`), stores the result and
releases the event with the extraction in it. The ``pending`` state is in the database, so a
restart resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from gateway.db.repos import CallRepo, OutboxRepo
from gateway.metrics import ERRORS

if TYPE_CHECKING:
    from gateway.after_call.extraction import ExtractionResult
    from gateway.after_call.outbox import OutboxDispatcher
    from gateway.db.engine import Database

log = logging.getLogger(__name__)


class CallExtractor(Protocol):
    """Fills the call details from a transcript (:class:`~gateway.after_call.extraction.Extractor`)."""

    async def extract(self, turns: Sequence[dict[str, Any]], caller_id: str = "") -> ExtractionResult:
        """The details of a call's turns (dicts with ``role`` and ``text``); never raises."""
        ...


async def wait_event(event: asyncio.Event, timeout_s: float) -> None:
    """Wait for ``event`` (then clear it) or ``timeout_s``. ``asyncio.timeout``, not ``wait_for``: on
    Python 3.11 ``wait_for`` can swallow a cancellation that races the event, and the task never stops."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
    event.clear()


class PostCallWorker:
    """Runs pending extractions one at a time and releases the calls' held webhook events.

    Args:
        db: the database.
        extractor: the LLM extractor.
        dispatcher: woken after events are released.
        poll_interval_s: how often to look for pending work without a wake-up, seconds.
        busy: true while live calls need the LLM; an extraction then waits (at most ``defer_s`` seconds).
        defer_s: longest wait for ``busy`` to clear, seconds.
    """

    def __init__(
        self,
        db: Database,
        extractor: CallExtractor,
        dispatcher: OutboxDispatcher | None = None,
        poll_interval_s: float = 5.0,
        busy: Callable[[], bool] | None = None,
        defer_s: float = 0.0,
    ) -> None:
        self.db = db
        self.extractor = extractor
        self.dispatcher = dispatcher
        self.poll_interval_s = poll_interval_s
        self.busy = busy
        self.defer_s = defer_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="post-call-worker")

    def wake(self) -> None:
        """Look for pending extractions now."""
        self._wake.set()

    async def stop(self) -> None:
        """Cancel the loop (an extraction in flight stays ``pending`` and is redone after a restart)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait([self._task], timeout=5.0)

    async def _run(self) -> None:
        while True:
            try:
                while await self.process_pending():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                ERRORS.labels("extraction").inc()
                log.exception("post-call worker pass failed")
            await wait_event(self._wake, self.poll_interval_s)

    async def process_pending(self) -> int:
        """Extract the oldest pending call, store the result, release its events; returns calls done (0 or 1).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database failed (the call stays ``pending``).
        """
        async with self.db.sessions() as s:
            if not await CallRepo(s).pending_extractions(limit=1):
                return 0
        step = 0.25
        for _ in range(math.ceil(self.defer_s / step)):  # poll: "busy" is a gauge, not an event
            if self.busy is None or not self.busy():
                break
            await asyncio.sleep(step)
        async with self.db.sessions() as s:
            calls = await CallRepo(s).pending_extractions(limit=1)
            if not calls:
                return 0
            call = calls[0]
            sid, caller = call.call_sid, call.from_number
            turns = [{"role": t.role, "text": t.text} for t in call.turns]
        result = await self.extractor.extract(turns, caller_id=caller)
        if not result.ok:
            ERRORS.labels("extraction").inc()
        data = result.details.model_dump() if result.details else None
        async with self.db.sessions() as s, s.begin():
            repo = CallRepo(s)
            fresh = await repo.get(sid)
            if fresh is None:
                return 1
            await repo.save_extraction(
                fresh,
                status="ok" if result.ok else "failed",
                data=data,
                raw=result.raw,
                attempts=result.attempts,
                error=result.error,
                model=result.model,
                duration_ms=result.duration_ms,
            )
            await OutboxRepo(s).release_held(
                sid, {"extraction": data, "extraction_status": "done" if result.ok else "failed"}
            )
        log.info("call %s: extraction %s in %.0f ms", sid, "done" if result.ok else "failed", result.duration_ms)
        if self.dispatcher is not None:
            self.dispatcher.wake()
        return 1
