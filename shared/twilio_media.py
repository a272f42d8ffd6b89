"""Twilio Media Streams wire format as a pure serializer (no I/O).

Protocol: https://www.twilio.com/docs/voice/media-streams/websocket-messages — Twilio sends
``connected``, ``start``, ``media``, ``dtmf``, ``mark`` and ``stop``; the server sends ``media``,
``mark`` and ``clear``. Audio payloads are base64 μ-law (audio/x-mulaw) at 8000 Hz.

Both directions are here so the gateway (server side) and the call simulator (Twilio side)
share one definition: :func:`parse_event`/:func:`serialize_event` for Twilio → server
messages, :func:`parse_command`/:func:`serialize_command` for server → Twilio messages.
A malformed frame parses to ``None`` (and the reason is logged), never raises — the design of
pipecat's ``serializers/twilio.py``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

log = logging.getLogger(__name__)


def _dumps(msg: dict[str, Any]) -> str:
    """Compact JSON text (orjson: ~4 µs less than ``json.dumps`` per media frame, ``bench/frame_bench.py``)."""
    return orjson.dumps(msg).decode()


# ---- Twilio → server events -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Connected:
    """First message on the socket."""

    protocol: str = "Call"
    version: str = "1.0.0"


@dataclass(frozen=True, slots=True)
class Start:
    """Stream metadata; ``custom_parameters`` are the TwiML ``<Parameter>`` values."""

    stream_sid: str
    call_sid: str
    account_sid: str = ""
    tracks: tuple[str, ...] = ("inbound",)
    custom_parameters: dict[str, str] = field(default_factory=dict)
    encoding: str = "audio/x-mulaw"
    sample_rate: int = 8000
    channels: int = 1
    sequence_number: int = 1


@dataclass(frozen=True, slots=True)
class Media:
    """One audio chunk: ``payload`` is raw μ-law bytes (already base64-decoded)."""

    stream_sid: str
    payload: bytes
    chunk: int = 0
    timestamp_ms: int = 0
    track: str = "inbound"
    sequence_number: int = 0


DTMF_DIGITS = frozenset("0123456789*#ABCD")
"""The keys a ``dtmf`` event may carry (a telephone keypad plus the A-D column); one per event."""


@dataclass(frozen=True, slots=True)
class Dtmf:
    """A keypad digit pressed by the caller."""

    stream_sid: str
    digit: str
    track: str = "inbound_track"
    sequence_number: int = 0


@dataclass(frozen=True, slots=True)
class MarkEcho:
    """Twilio's echo of a server ``mark``: the audio sent before it has been played."""

    stream_sid: str
    name: str
    sequence_number: int = 0


@dataclass(frozen=True, slots=True)
class Stop:
    """The stream ended (caller hung up or the call was redirected)."""

    stream_sid: str
    call_sid: str = ""
    account_sid: str = ""
    sequence_number: int = 0


Event = Connected | Start | Media | Dtmf | MarkEcho | Stop


# ---- server → Twilio commands -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SendMedia:
    """Audio to play: ``payload`` is raw μ-law bytes at 8000 Hz."""

    stream_sid: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class SendMark:
    """Ask Twilio to echo ``name`` once the audio sent before it has played."""

    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Clear:
    """Drop all audio Twilio has buffered (barge-in); pending marks are echoed."""

    stream_sid: str


Command = SendMedia | SendMark | Clear


def _load(raw: str | bytes) -> dict | None:
    if isinstance(raw, bytes | bytearray):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            log.warning("twilio: skipped a binary frame of %d bytes", len(raw))
            return None
    try:
        msg = orjson.loads(raw)
    except (json.JSONDecodeError, TypeError):  # orjson.JSONDecodeError is a json.JSONDecodeError
        log.warning("twilio: skipped a frame that is not JSON: %.80r", raw)
        return None
    if not isinstance(msg, dict) or not isinstance(msg.get("event"), str):
        log.warning("twilio: skipped a frame without an event: %.80r", raw)
        return None
    return msg


def _b64(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _int(value: object, default: int = 0) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default


def parse_event(raw: str | bytes) -> Event | None:
    """Parse one Twilio → server WebSocket message.

    Returns the typed event, or ``None`` for anything malformed or unknown (bad JSON, a
    binary frame, an unknown ``event``, missing fields, invalid base64); the reason is logged.
    """
    msg = _load(raw)
    if msg is None:
        return None
    kind = msg["event"]
    sid = msg.get("streamSid", "")
    seq = _int(msg.get("sequenceNumber"))
    try:
        if kind == "connected":
            return Connected(protocol=str(msg.get("protocol", "Call")), version=str(msg.get("version", "")))
        if kind == "start":
            s = msg["start"]
            fmt = s.get("mediaFormat") or {}
            params = s.get("customParameters") or {}
            return Start(
                stream_sid=str(s.get("streamSid") or sid),
                call_sid=str(s["callSid"]),
                account_sid=str(s.get("accountSid", "")),
                tracks=tuple(s.get("tracks") or ("inbound",)),
                custom_parameters={str(k): str(v) for k, v in params.items()},
                encoding=str(fmt.get("encoding", "audio/x-mulaw")),
                sample_rate=_int(fmt.get("sampleRate"), 8000),
                channels=_int(fmt.get("channels"), 1),
                sequence_number=seq,
            )
        if kind == "media":
            m = msg["media"]
            payload = _b64(m.get("payload"))
            if payload is None:
                log.warning("twilio: skipped a media frame with invalid base64 payload")
                return None
            return Media(
                stream_sid=str(sid),
                payload=payload,
                chunk=_int(m.get("chunk")),
                timestamp_ms=_int(m.get("timestamp")),
                track=str(m.get("track", "inbound")),
                sequence_number=seq,
            )
        if kind == "dtmf":
            d = msg["dtmf"]
            digit = d["digit"]
            if not isinstance(digit, str) or len(digit) != 1 or digit not in DTMF_DIGITS:
                # The digit reaches the LLM prompt: anything but one keypad key is refused here.
                log.warning("twilio: skipped a dtmf frame with an invalid digit %.20r", digit)
                return None
            return Dtmf(stream_sid=str(sid), digit=digit, track=str(d.get("track", "")), sequence_number=seq)
        if kind == "mark":
            return MarkEcho(stream_sid=str(sid), name=str(msg["mark"]["name"]), sequence_number=seq)
        if kind == "stop":
            s = msg.get("stop") or {}
            return Stop(
                stream_sid=str(sid),
                call_sid=str(s.get("callSid", "")),
                account_sid=str(s.get("accountSid", "")),
                sequence_number=seq,
            )
    except (KeyError, TypeError, AttributeError) as exc:
        log.warning("twilio: skipped a malformed %r frame (%s)", kind, exc)
        return None
    log.warning("twilio: skipped an unknown event %r", kind)
    return None


def serialize_event(event: Event) -> str:
    """Serialize a Twilio → server event exactly as Twilio sends it (used by the simulator)."""
    seq = str(getattr(event, "sequence_number", 0))
    if isinstance(event, Connected):
        return _dumps({"event": "connected", "protocol": event.protocol, "version": event.version})
    if isinstance(event, Start):
        return _dumps(
            {
                "event": "start",
                "sequenceNumber": seq,
                "start": {
                    "accountSid": event.account_sid,
                    "streamSid": event.stream_sid,
                    "callSid": event.call_sid,
                    "tracks": list(event.tracks),
                    "mediaFormat": {
                        "encoding": event.encoding,
                        "sampleRate": event.sample_rate,
                        "channels": event.channels,
                    },
                    "customParameters": event.custom_parameters,
                },
                "streamSid": event.stream_sid,
            }
        )
    if isinstance(event, Media):
        return _dumps(
            {
                "event": "media",
                "sequenceNumber": seq,
                "media": {
                    "track": event.track,
                    "chunk": str(event.chunk),
                    "timestamp": str(event.timestamp_ms),
                    "payload": base64.b64encode(event.payload).decode("ascii"),
                },
                "streamSid": event.stream_sid,
            }
        )
    if isinstance(event, Dtmf):
        return _dumps(
            {
                "event": "dtmf",
                "streamSid": event.stream_sid,
                "sequenceNumber": seq,
                "dtmf": {"track": event.track, "digit": event.digit},
            }
        )
    if isinstance(event, MarkEcho):
        return _dumps(
            {"event": "mark", "sequenceNumber": seq, "streamSid": event.stream_sid, "mark": {"name": event.name}}
        )
    if isinstance(event, Stop):
        return _dumps(
            {
                "event": "stop",
                "sequenceNumber": seq,
                "stop": {"accountSid": event.account_sid, "callSid": event.call_sid},
                "streamSid": event.stream_sid,
            }
        )
    raise TypeError(f"not a Twilio event: {event!r}")


def serialize_command(command: Command) -> str:
    """Serialize a server → Twilio command (``media``, ``mark`` or ``clear``)."""
    if isinstance(command, SendMedia):
        payload = base64.b64encode(command.payload).decode("ascii")
        return _dumps({"event": "media", "streamSid": command.stream_sid, "media": {"payload": payload}})
    if isinstance(command, SendMark):
        return _dumps({"event": "mark", "streamSid": command.stream_sid, "mark": {"name": command.name}})
    if isinstance(command, Clear):
        return _dumps({"event": "clear", "streamSid": command.stream_sid})
    raise TypeError(f"not a Twilio command: {command!r}")


def parse_command(raw: str | bytes) -> Command | None:
    """Parse a server → Twilio message (the simulator's side); ``None`` if malformed."""
    msg = _load(raw)
    if msg is None:
        return None
    kind = msg["event"]
    sid = str(msg.get("streamSid", ""))
    try:
        if kind == "media":
            payload = _b64(msg["media"]["payload"])
            return None if payload is None else SendMedia(stream_sid=sid, payload=payload)
        if kind == "mark":
            return SendMark(stream_sid=sid, name=str(msg["mark"]["name"]))
        if kind == "clear":
            return Clear(stream_sid=sid)
    except (KeyError, TypeError):
        return None
    return None
