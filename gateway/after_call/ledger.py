"""The durable record of each call: its row when it starts and when it ends, the recording file and
the webhook events, written in the same transaction as the row they report (the outbox).

* :meth:`CallLedger.record_start` writes the ``in-progress`` (or ``rejected``) row and the
  ``call.started`` event in the background, off the greeting's path.
* :meth:`CallLedger.record_end` writes the recording WAV, then in one transaction the call, its
  turns and the ``call.completed`` event (held until the extraction is stored when extraction
  is on; the post-call worker releases it), retried a few times.

Who answers the call, and where its events go, is decided before: :mod:`gateway.agents.resolver`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.db.models import from_unix
from gateway.db.repos import CallRepo, OutboxRepo
from gateway.metrics import ERRORS
from shared.audio import TELEPHONY_RATE_HZ, wav_bytes

if TYPE_CHECKING:
    from gateway.after_call.outbox import OutboxDispatcher
    from gateway.after_call.worker import PostCallWorker
    from gateway.agents.profile import AgentProfile, CallSummary
    from gateway.agents.resolver import WebhookRoute
    from gateway.config import GatewaySettings
    from gateway.db.engine import Database

log = logging.getLogger(__name__)

_SAFE_SID = re.compile(r"[^A-Za-z0-9_.-]")
STORE_ATTEMPTS = 3
"""Tries to store a finished call (0.5 s, then 1 s apart) before giving up (the turns stay in Redis)."""


def recording_relpath(call_sid: str) -> str:
    """Where a call's WAV goes, relative to the data dir: ``recordings/<sid>.wav`` (sid sanitised)."""
    return f"recordings/{_SAFE_SID.sub('_', call_sid) or 'call'}.wav"


class CallLedger:
    """Writes calls, recordings and their webhook events.

    Args:
        settings: gateway settings (data dir, public URL, recording and extraction switches).
        db: the database.
        dispatcher: woken after events are written (``None``: events wait for the next poll).
        worker: woken after a call needs extraction.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        db: Database,
        dispatcher: OutboxDispatcher | None = None,
        worker: PostCallWorker | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.dispatcher = dispatcher
        self.worker = worker
        self._starts: dict[str, asyncio.Task[None]] = {}

    def record_start(
        self,
        call_sid: str,
        from_: str,
        to: str,
        profile: AgentProfile,
        route: WebhookRoute | None,
        started_at: float,
    ) -> None:
        """Write the call's row (and ``call.started`` if its route wants it) in the background.

        ``started_at``: Unix seconds. A failure is logged and counted; never raises.
        """
        task = asyncio.create_task(
            self._write_start(call_sid, from_, to, profile, route, started_at), name=f"call-start-{call_sid}"
        )
        self._starts[call_sid] = task
        task.add_done_callback(lambda t: self._starts.pop(call_sid) if self._starts.get(call_sid) is t else None)

    async def _write_start(
        self,
        call_sid: str,
        from_: str,
        to: str,
        profile: AgentProfile,
        route: WebhookRoute | None,
        started_at: float,
    ) -> None:
        started = from_unix(started_at)
        assert started is not None
        status = "rejected" if profile.reject_message else "in-progress"
        try:
            async with self.db.sessions() as s, s.begin():
                await CallRepo(s).start(call_sid, "", from_, to, profile.agent_id, profile.name, started, status)
                if route is not None and "call.started" in route.events:
                    payload = {
                        "call_sid": call_sid,
                        "from": from_,
                        "to": to,
                        "agent": profile.name,
                        "agent_id": profile.agent_id,
                        "status": status,
                        "started_at": started_at,
                    }
                    await OutboxRepo(s).enqueue(
                        "call.started", payload, route.url, route.secret, call_sid, profile.agent_id
                    )
        except Exception:
            ERRORS.labels("database").inc()
            log.exception("call %s: could not record the call start", call_sid)
            return
        if self.dispatcher is not None:
            self.dispatcher.wake()

    async def record_end(self, summary: CallSummary, route: WebhookRoute | None) -> None:
        """Keep the call: recording, call row, turns and ``call.completed`` (to ``route``); queue the extraction.

        Waits for the call's start row first. Never raises; a failure is logged (the turns stay in Redis).
        """
        start = self._starts.pop(summary.call_sid, None)
        if start is not None:
            with contextlib.suppress(Exception):
                await start
        profile = summary.profile
        rejected = profile.reject_message is not None
        status = "rejected" if rejected else summary.status
        recording = await self._write_recording(summary)
        has_speech = any(t.get("role") == "user" and str(t.get("text") or "").strip() for t in summary.turns)
        if not self.settings.extraction.enabled:
            extraction_status = "disabled"
        elif rejected or not has_speech:
            extraction_status = "skipped"
        else:
            extraction_status = "pending"
        started, ended = from_unix(summary.started_at), from_unix(summary.ended_at)
        assert started is not None and ended is not None
        recording_url = None
        if recording:
            recording_url = f"{(self.settings.public_url or '').rstrip('/')}/api/calls/{summary.call_sid}/recording"

        async def store() -> None:
            async with self.db.sessions() as s, s.begin():
                await CallRepo(s).finish(
                    summary.call_sid,
                    stream_sid=summary.stream_sid,
                    from_=summary.from_,
                    to=summary.to,
                    agent_id=profile.agent_id,
                    agent_name=profile.name,
                    started_at=started,
                    ended_at=ended,
                    status=status,
                    turns=summary.turns,
                    recording_path=recording,
                    extraction_status=extraction_status,
                )
                if route is not None and "call.completed" in route.events:
                    payload = summary.webhook_payload()
                    payload.update(
                        status=status,
                        agent_id=profile.agent_id,
                        recording_url=recording_url,
                        extraction_status=extraction_status,
                        extraction=None,
                    )
                    await OutboxRepo(s).enqueue(
                        "call.completed",
                        payload,
                        route.url,
                        route.secret,
                        summary.call_sid,
                        profile.agent_id,
                        held=extraction_status == "pending",
                    )

        for attempt in range(1, STORE_ATTEMPTS + 1):  # the durable record of the call: worth a retry
            try:
                await store()
                break
            except Exception:
                ERRORS.labels("database").inc()
                if attempt == STORE_ATTEMPTS:
                    log.exception("call %s: could not store the finished call", summary.call_sid)
                    return
                log.warning("call %s: storing the call failed (attempt %d), retrying", summary.call_sid, attempt)
                await asyncio.sleep(0.5 * 2 ** (attempt - 1))
        if extraction_status == "pending" and self.worker is not None:
            self.worker.wake()
        if self.dispatcher is not None:
            self.dispatcher.wake()

    async def _write_recording(self, summary: CallSummary) -> str | None:
        """Write the mixed recording as ``data_dir/recordings/<sid>.wav``; its relative path, or ``None``."""
        if not self.settings.recording.enabled or summary.recording_pcm16 is None:
            return None
        rel = recording_relpath(summary.call_sid)
        path = Path(self.settings.data_dir) / rel
        try:
            data = await asyncio.to_thread(wav_bytes, summary.recording_pcm16, TELEPHONY_RATE_HZ)
            await asyncio.to_thread(_write_atomic, path, data)
        except Exception:
            ERRORS.labels("database").inc()
            log.exception("call %s: could not write the recording", summary.call_sid)
            return None
        return rel

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) for the call-start writes in flight."""
        if self._starts:
            await asyncio.wait(list(self._starts.values()), timeout=timeout_s)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".wav.part")
    tmp.write_bytes(data)
    tmp.replace(path)
