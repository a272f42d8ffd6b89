"""The browser carriers' event protocol: JSON events out, client messages in (no I/O: replies go
through the caller's ``send_event``).

The same events go over the WebSocket voice API (``/ws/conversation``, with binary audio beside
them) and over the softphone's WebRTC data channel (``/phone``). Server → client, one JSON object
each, ``type`` first (the full reference is ``docs/websocket-api.md``):

* ``connected {session_id, agent, sample_rate}``: the session is open (``session_id`` is the call id);
* ``transcript {text, is_final}``: what the caller said;
* ``ai_text {text, is_complete, reply_id}``: the agent's words token by token, then the whole text;
* ``ai_audio_start {sample_rate, reply_id}``: binary PCM16 of that reply follows (WebSocket only);
* ``interrupted``: the caller barged in: drop the agent audio you buffered (WebSocket only);
* ``turn_complete {reply_id, text, interrupted, status, latency_ms}``: a reply is over (``text``:
  what was heard);
* ``pong``, ``analysis {…}`` (the post-call extraction), ``error {message}``.

Client → server: binary audio (WebSocket), and ``ping``, ``end_conversation``, ``text {text}``
(typed input, answered like speech). Anything else is an ``error`` and the session goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from gateway.conversation.transport import (
    AgentText,
    CallerLeft,
    CallerTranscript,
    ConversationEvent,
    TextIn,
    TurnRecorded,
)
from gateway.metrics import MALFORMED

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 2000
"""Longest typed ``text`` a client may send (longer is refused with an ``error``)."""


def event(kind: str, **fields: Any) -> str:
    """One server event as JSON text: ``{"type": kind, **fields}``."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


def conversation_event(ev: ConversationEvent) -> str | None:
    """The JSON event a conversation event becomes, or ``None`` (a caller turn: its
    ``transcript`` went out when it was transcribed)."""
    if isinstance(ev, CallerTranscript):
        return event("transcript", text=ev.text, is_final=ev.is_final)
    if isinstance(ev, AgentText):
        return event("ai_text", text=ev.text, is_complete=ev.is_complete, reply_id=ev.reply_id)
    if isinstance(ev, TurnRecorded) and ev.turn.get("role") == "assistant":
        turn = ev.turn
        return event(
            "turn_complete",
            reply_id=turn.get("reply_id"),
            text=turn.get("text", ""),
            interrupted=bool(turn.get("interrupted")),
            status=turn.get("status"),
            latency_ms=turn.get("latency_ms") or {},
        )
    return None


@dataclass(frozen=True)
class ClientMessage:
    """A client's JSON message: ``ping``, ``end_conversation`` or ``text`` (with ``text``)."""

    kind: Literal["ping", "end_conversation", "text"]
    text: str = ""


class BadMessage(ValueError):
    """A client message that is not one of the protocol's (its ``str`` is the ``error`` event's message)."""


def parse_client_message(raw: str | bytes) -> ClientMessage:
    """Parse one client JSON message.

    Raises:
        BadMessage: not JSON, not an object, an unknown ``type``, or a ``text`` without text
            (or longer than :data:`MAX_TEXT_CHARS`).
    """
    try:
        msg = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadMessage(f"not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise BadMessage("a message must be a JSON object with a 'type'")
    kind = msg.get("type")
    if kind in ("ping", "end_conversation"):
        return ClientMessage(kind)
    if kind == "text":
        text = msg.get("text")
        if not isinstance(text, str) or not text.strip():
            raise BadMessage("'text' needs a non-empty string 'text'")
        if len(text) > MAX_TEXT_CHARS:
            raise BadMessage(f"'text' longer than {MAX_TEXT_CHARS} characters")
        return ClientMessage("text", text.strip())
    raise BadMessage(f"unknown message type {kind!r} (expected ping, end_conversation or text)")


def client_event(raw: str | bytes, send_event: Callable[..., None], call_id: str) -> TextIn | CallerLeft | None:
    """What one client message means to the call, for both browser carriers.

    ``text`` → :class:`TextIn`, ``end_conversation`` → :class:`CallerLeft`; ``ping`` is answered with
    ``pong`` and a malformed message with an ``error`` event (logged, counted in
    ``gateway_malformed_messages_total``), both → ``None``: the session goes on. Never raises.

    Args:
        raw: the message as received (JSON text).
        send_event: sends one event to this client (``send_event(kind, **fields)``).
        call_id: for the log line.
    """
    try:
        msg = parse_client_message(raw)
    except BadMessage as exc:
        MALFORMED.inc()
        log.info("call %s: bad client message: %s", call_id, exc)
        send_event("error", message=str(exc))
        return None
    if msg.kind == "ping":
        send_event("pong")
        return None
    if msg.kind == "text":
        return TextIn(msg.text)
    return CallerLeft()
