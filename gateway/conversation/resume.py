"""A call that outlives its stream: handed over when the stream is lost, resumed by another session.

No voice framework ships this (LiveKit Agents and pipecat end the session with its connection).
Twilio runs the TwiML after ``<Connect><Stream>`` when a stream ends while the call goes on, and
the voice webhook sends the call back to a live gateway with a one-time resume grant
(:mod:`gateway.fleet.routing`). This module is both ends of that hand-over, carrier-agnostic:

* **The new session** (:func:`load_resumed`): the stream's ``start`` carries the grant as the
  :data:`RESUME_PARAMETER` parameter, the admission swapped the call's stream claim to it
  (:meth:`~gateway.conversation.store.CallStore.take_over_stream`), and the call's record in the
  live store gives its start time, turns and actions. The session keeps that record, rebuilds the
  LLM's history from the turns (:meth:`~gateway.conversation.transcript.Transcript.restore`) and
  opens with :func:`resume_line` ("Sorry, you cut out for a second. What's your address?")
  instead of the greeting.
* **The old session**, if its process is alive (:func:`wait_for_takeover`): its stream closed
  without the carrier's ``stop``, so it marks the call ``suspended`` and waits
  ``GATEWAY_FLEET__RESUME_WAIT_S`` for the claim to move to another stream. If it moves, it lets
  the call go without finishing it (no webhook, no database row: the new owner finishes the call
  once); if not, it finishes the call as before. A session that ends the call itself marks it
  ``ending`` first (:data:`ENDING_STATE`), so a ``<Redirect>`` racing the hang-up is not resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.conversation.context import now

if TYPE_CHECKING:
    from gateway.config_groups import AgentSettings
    from gateway.conversation.deps import Deps
    from gateway.conversation.record import RecordWriter
    from gateway.conversation.transport import CallStarted

log = logging.getLogger(__name__)

RESUME_PARAMETER = "SwitchboardResume"
"""Name of the stream parameter carrying the resume grant (a TwiML ``<Parameter>`` for Twilio)."""
SUSPENDED_STATE = "suspended"
"""Record state of a call whose stream was lost and that waits to be resumed."""
ENDING_STATE = "ending"
"""Record state of a call its session is ending (never resumed)."""
POLL_S = 0.1
"""How often a suspended session looks whether its call was taken over, seconds."""


@dataclass
class ResumedCall:
    """The live record of a call another stream served: times in Unix seconds, turns and actions
    in their stored shape (:meth:`~gateway.conversation.transcript.Turn.to_dict`)."""

    call_sid: str
    started_at: float
    turns: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    previous_gateway: str = ""


async def load_resumed(deps: Deps, event: CallStarted) -> ResumedCall | None:
    """The call to resume if ``event`` (an admitted stream) carries a resume grant and the call is
    still live in the store; else ``None`` (a new call). Never raises: a store failure is a new call."""
    if not event.parameters.get(RESUME_PARAMETER):
        return None
    try:
        async with asyncio.timeout(deps.settings.redis.socket_timeout_s):
            record = await deps.store.get_call(event.call_id)
    except Exception as exc:
        log.warning("call %s: could not load the call to resume (%r); starting it afresh", event.call_id, exc)
        return None
    if record is None or record.get("status") != "in-progress":
        return None
    return ResumedCall(
        event.call_id,
        float(record.get("started_at") or time.time()),
        list(record.get("turns") or []),
        list(record.get("actions") or []),
        str(record.get("gateway") or ""),
    )


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def last_sentence(text: str) -> str:
    """The last sentence of ``text`` (split after ``.``, ``!`` or ``?``), stripped."""
    parts = [p for p in _SENTENCE_END.split(text.strip()) if p.strip()]
    return parts[-1].strip() if parts else ""


def resume_line(agent: AgentSettings, turns: list[dict[str, Any]]) -> str | None:
    """What the agent says first on a resumed call; ``None`` when nothing was said yet (greet again).

    The caller spoke last (their answer was lost): ``agent.resume_ask_text``. The agent spoke
    last: ``agent.resume_text`` with ``{last}`` the last sentence the caller heard.
    """
    for turn in reversed(turns):
        text = str(turn.get("text") or "").strip()
        if not text or turn.get("backchannel"):
            continue
        if turn.get("role") == "user":
            return agent.resume_ask_text
        return agent.resume_text.replace("{last}", last_sentence(text)).strip()
    return None


async def wait_for_takeover(deps: Deps, call_sid: str, stream_sid: str) -> bool:
    """After a lost stream: whether another stream took ``call_sid`` over within
    ``GATEWAY_FLEET__RESUME_WAIT_S`` (polled every :data:`POLL_S`; store errors count as "not yet")."""
    deadline = now() + deps.settings.fleet.resume_wait_s
    while True:
        try:
            async with asyncio.timeout(deps.settings.redis.socket_timeout_s):
                holder = await deps.store.stream_of(call_sid)
            if holder is not None and holder != stream_sid:
                return True
        except Exception as exc:
            log.debug("call %s: could not read the stream claim: %r", call_sid, exc)
        if now() >= deadline:
            return False
        await asyncio.sleep(POLL_S)


async def mark_state(writer: RecordWriter, state: str, timeout_s: float = 0.5) -> None:
    """Set the record's ``state`` and wait (at most ``timeout_s`` seconds) until the store has it:
    before a close the carrier may act on (:data:`ENDING_STATE`, :data:`SUSPENDED_STATE`)."""
    writer.set_state(state)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await writer.synced.wait()
