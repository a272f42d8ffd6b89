"""How a call's session ends: bounded close of its tasks, then finish the call or hand it over.

Once the session's :class:`~gateway.conversation.tasks.TaskScope` is closed, one of two things
happens to the call:

* **finish**: the call ended here (the caller left, the agent hung up, the max duration,
  SIGTERM, a bug in one task): every reply is stopped and recorded as far as it was heard, the
  live record is closed with a bounded flush, and the :class:`~gateway.agents.profile.CallSummary`
  goes to the hooks (database, webhook, extraction) within ``GATEWAY_CALL__FINISH_TIMEOUT_S``;
* **hand over**: the stream closed without the carrier's ``stop`` (a gateway restart, a network
  blip): the record is marked suspended and the session waits ``GATEWAY_FLEET__RESUME_WAIT_S`` for
  another stream to resume it (:mod:`gateway.conversation.resume`); if one does, this session lets
  the call go without finishing it, else it finishes it.

The session (:class:`~gateway.conversation.session.CallSession`) implements :class:`EndingHost`;
this module never imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Protocol

from gateway.agents.profile import AgentProfile, CallSummary
from gateway.conversation.resume import ENDING_STATE, SUSPENDED_STATE, mark_state, wait_for_takeover
from gateway.metrics import ABANDONED_TASKS, ACTIVE_CALLS, ERRORS

if TYPE_CHECKING:
    from gateway.conversation.deps import Deps
    from gateway.conversation.record import RecordWriter
    from gateway.conversation.recording import CallRecorder
    from gateway.conversation.replies import Reply
    from gateway.conversation.speaker import Speaker
    from gateway.conversation.tasks import TaskScope
    from gateway.conversation.transcript import Transcript
    from gateway.conversation.transport import Transport

log = logging.getLogger(__name__)


class EndingHost(Protocol):
    """What ending a call reads from its session.

    Attributes:
        deps: the process's collaborators (hooks, live calls, settings).
        scope: the call's tasks.
        transport: the caller's connection (closed with ``close_code``).
        call_sid, stream_sid, from_, to: the call's identity (``call_sid`` empty: never started).
        started_at: Unix seconds.
        end_status: how the call ended (``completed``, ``max-duration``, …).
        close_code: WebSocket close code for the transport (1000; 1008 for a refused stream).
        stream_lost: the connection closed without the carrier's ``stop``.
        writer: the live record's writer (``None`` before the call started).
        speaker: the call's TTS playout (``None`` before the profile was known).
        recorder: both sides of the call, or ``None`` when recording is off.
        transcript: the call's turns.
    """

    deps: Deps
    scope: TaskScope
    transport: Transport
    call_sid: str
    stream_sid: str
    from_: str
    to: str
    started_at: float
    end_status: str
    close_code: int
    stream_lost: bool
    writer: RecordWriter | None
    speaker: Speaker | None
    recorder: CallRecorder | None
    transcript: Transcript

    @property
    def answering(self) -> AgentProfile | None:
        """The agent answering, or ``None`` when the call ended before its profile was known."""
        ...

    def replies(self) -> list[Reply]:
        """Every reply of the call still known to the responder (none before it exists)."""
        ...


async def close_call(host: EndingHost) -> None:
    """Close the call's tasks (bounded by ``GATEWAY_CALL__TASK_CLOSE_TIMEOUT_S``) and the transport
    (1 s), then hand the call over (a lost stream that another one resumes) or finish it. Never raises."""
    s = host.deps.settings
    abandoned = await host.scope.aclose(s.call.task_close_timeout_s)
    if abandoned:
        ABANDONED_TASKS.inc(len(abandoned))
    if not host.stream_lost:  # ended here, on purpose: a <Redirect> racing the close must not resume it
        await _mark(host, ENDING_STATE)
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await host.transport.close(host.close_code)
    if not (host.stream_lost and await hand_over(host)):
        await finish(host)


async def _mark(host: EndingHost, state: str) -> None:
    if host.writer is not None:
        await mark_state(host.writer, state)


async def hand_over(host: EndingHost) -> bool:
    """The stream was lost: wait (``GATEWAY_FLEET__RESUME_WAIT_S``) for another stream to resume
    the call; if one does, let the call go here without finishing it. Returns whether it did."""
    if not host.call_sid or host.writer is None or host.answering is None:
        return False
    host.deps.live_calls.discard(host.call_sid)
    await _mark(host, SUSPENDED_STATE)
    if not await wait_for_takeover(host.deps, host.call_sid, host.stream_sid):
        return False
    ACTIVE_CALLS.dec()
    if host.speaker is not None:
        await host.speaker.aclose()
    await host.writer.close(host.deps.settings.redis.flush_timeout_s)
    host.deps.hooks.call_moved(host.call_sid)
    log.info("call %s: resumed by another stream; let go after %.1fs", host.call_sid, time.time() - host.started_at)
    return True


def record_replies(host: EndingHost, status: str) -> None:
    """Stop every reply and record what of it was heard (once)."""
    for reply in host.replies():
        reply.interrupt()
        host.transcript.record_reply(reply, status=status)


async def finish(host: EndingHost) -> None:
    """Close the record (bounded flush) and hand the call to the hooks (bounded). Never raises
    (a failing ``call_ended`` hook is logged and counted in ``gateway_errors_total{stage="session"}``)."""
    if not host.call_sid or host.writer is None:
        return
    s = host.deps.settings
    ACTIVE_CALLS.dec()
    host.deps.live_calls.discard(host.call_sid)
    ended_at = time.time()
    record_replies(host, "hangup")
    if host.speaker is not None:
        await host.speaker.aclose()
    host.writer.end(ended_at, host.end_status)
    await host.writer.close(s.redis.flush_timeout_s)
    turns = list(host.writer.record.turns)  # the call's own record: complete even if Redis is not
    profile = host.answering
    if profile is None:  # the hooks failed before the call was served
        log.info("call %s finished after %.1fs without a profile", host.call_sid, ended_at - host.started_at)
        return
    summary = CallSummary(
        call_sid=host.call_sid,
        stream_sid=host.stream_sid,
        from_=host.from_,
        to=host.to,
        started_at=host.started_at,
        ended_at=ended_at,
        turns=turns,
        profile=profile,
        status=host.end_status,
        recording_pcm16=await asyncio.to_thread(host.recorder.mix) if host.recorder is not None else None,
    )
    try:
        async with asyncio.timeout(s.call.finish_timeout_s):
            await host.deps.hooks.call_ended(summary)
    except Exception:
        ERRORS.labels("session").inc()
        log.exception("call %s: call_ended hook failed", host.call_sid)
    log.info("call %s finished after %.1fs", host.call_sid, ended_at - host.started_at)
