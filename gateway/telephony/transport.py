"""Twilio Media Streams as a :class:`~gateway.conversation.transport.Transport`.

The one place that reads and writes Twilio's WebSocket messages for a live call
(https://www.twilio.com/docs/voice/media-streams/websocket-messages): ``start`` becomes
:class:`CallStarted` (with the per-call stream token checked, :mod:`gateway.telephony.signature`),
``media`` μ-law 8 kHz becomes :class:`AudioIn` PCM16, ``mark`` echoes :class:`MarkPlayed`,
``dtmf`` :class:`DigitPressed`, ``stop`` :class:`CallerLeft`. Oversized and malformed messages
are counted, logged and skipped; a message for another stream is skipped. Outbound audio is
paced by :class:`~gateway.telephony.playback.Playback`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import WebSocket, WebSocketDisconnect

from gateway.config import GatewaySettings
from gateway.conversation.transport import (
    AudioFormat,
    AudioIn,
    CallerLeft,
    CallStarted,
    ConversationEvent,
    DigitPressed,
    MarkPlayed,
    PlayoutHooks,
    TransportEvent,
)
from gateway.metrics import MALFORMED, OVERSIZED
from gateway.telephony.playback import Playback
from gateway.telephony.signature import TOKEN_PARAMETER, StreamTokens
from shared import twilio_media as tw
from shared.audio import TELEPHONY_RATE_HZ, split_frames, ulaw_decode

log = logging.getLogger(__name__)


class TwilioTransport:
    """One Twilio Media Stream (an accepted WebSocket).

    Args:
        ws: the accepted WebSocket.
        settings: message limits (``max_message_chars``, ``max_media_payload_bytes``) and ``playback_lead_ms``.
        tokens: checks the stream token of ``start`` (``None``: no Twilio auth token, no check).
    """

    input_rate_hz = TELEPHONY_RATE_HZ
    output_format = AudioFormat("pcmu", TELEPHONY_RATE_HZ, 20)
    echo_cancelled = False  # a speakerphone's echo comes back down the line

    def __init__(self, ws: WebSocket, settings: GatewaySettings, tokens: StreamTokens | None = None) -> None:
        self.ws = ws
        self.s = settings
        self.tokens = tokens
        self.stream_sid = ""
        self.call_sid = ""
        self._hooks: PlayoutHooks | None = None
        self._playback: Playback | None = None
        self._ready = asyncio.Event()
        self._oversized = 0
        self._closed = False

    def bind(self, hooks: PlayoutHooks) -> None:
        """Who hears about playout."""
        self._hooks = hooks
        if self._playback is not None:
            self._playback.hooks = hooks

    # ---- input -------------------------------------------------------------------------------
    async def receive(self) -> TransportEvent | None:
        """The next event; ``None`` once the socket is closed. Bad messages are skipped."""
        while True:
            try:
                msg = await self.ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                return None
            if msg["type"] == "websocket.disconnect":
                return None
            raw = msg.get("text")
            data = raw if raw is not None else msg.get("bytes") or b""
            if len(data) > self.s.twilio.max_message_chars:  # skipped unparsed: never decode a flood
                self._skip_oversized("message", len(data))
                continue
            event = tw.parse_event(data)
            if event is None:
                MALFORMED.inc()
                continue
            out = self._translate(event)
            if out is not None:
                return out

    def _translate(self, event: tw.Event) -> TransportEvent | None:
        if isinstance(event, tw.Media) and self.stream_sid and event.stream_sid == self.stream_sid:  # 50 a second
            if len(event.payload) > self.s.twilio.max_media_payload_bytes:
                self._skip_oversized("payload", len(event.payload))
                return None
            return AudioIn(ulaw_decode(event.payload), event.timestamp_ms)
        if isinstance(event, tw.Connected):
            return None
        if isinstance(event, tw.Start):
            return self._on_start(event)
        if isinstance(event, tw.Stop):
            return CallerLeft()
        if not self.stream_sid or getattr(event, "stream_sid", None) != self.stream_sid:
            MALFORMED.inc()
            log.warning(
                "call %s: skipped %s for stream %r",
                self.call_sid,
                type(event).__name__,
                getattr(event, "stream_sid", None),
            )
            return None
        if isinstance(event, tw.MarkEcho):
            return MarkPlayed(event.name)
        if isinstance(event, tw.Dtmf):
            return DigitPressed(event.digit)
        return None

    def _on_start(self, event: tw.Start) -> CallStarted | None:
        if self.stream_sid:
            log.warning("call %s: ignored a second start", self.call_sid)
            return None
        refused = None
        if self.tokens is not None:
            refused = self.tokens.verify(event.call_sid, event.custom_parameters.get(TOKEN_PARAMETER))
        self.stream_sid, self.call_sid = event.stream_sid, event.call_sid
        self._playback = Playback(
            self._send, self.stream_sid, self.s.twilio.playback_lead_ms, self._hooks, self.s.twilio.playback_tick_ms
        )
        self._ready.set()
        params = event.custom_parameters
        return CallStarted(
            call_id=event.call_sid,
            stream_id=event.stream_sid,
            from_=params.get("From", params.get("from", "")),
            to=params.get("To", params.get("to", "")),
            parameters={k: v for k, v in params.items() if k != TOKEN_PARAMETER},
            refused=refused,
        )

    def _skip_oversized(self, kind: str, size: int) -> None:
        OVERSIZED.labels(kind).inc()
        self._oversized += 1
        level = logging.WARNING if self._oversized == 1 else logging.DEBUG
        log.log(level, "call %s: skipped an oversized %s (%d; %d so far)", self.call_sid, kind, size, self._oversized)

    # ---- output ------------------------------------------------------------------------------
    async def _send(self, command: tw.Command) -> None:
        await self.ws.send_text(tw.serialize_command(command))

    def _pacer(self) -> Playback:
        if self._playback is None:
            raise RuntimeError("no audio can be sent before the stream's start")
        return self._playback

    def play(self, audio: bytes, reply_id: str) -> None:
        """Queue μ-law 8 kHz audio (whole 160-byte frames) of ``reply_id``."""
        self._pacer().enqueue_audio(split_frames(audio), reply_id)

    def mark(self, name: str) -> None:
        """Queue a Twilio ``mark`` after the audio queued so far."""
        self._pacer().enqueue_mark(name)

    async def clear(self) -> None:
        """Drop queued audio and send Twilio ``clear`` (it flushes what it buffered)."""
        if self._playback is not None:
            await self._playback.clear()

    def pause(self) -> None:
        """Hold the queued audio (what Twilio buffered, ≤ lead + tick, plays on)."""
        if self._playback is not None:
            self._playback.pause()

    def resume(self) -> None:
        """Send the held audio on."""
        if self._playback is not None:
            self._playback.resume()

    @property
    def pending(self) -> int:
        """Frames and marks not yet sent."""
        return self._playback.pending_frames if self._playback is not None else 0

    async def run_output(self) -> None:
        """Pace the queued audio out until cancelled."""
        await self._ready.wait()
        await self._pacer().run()

    async def close(self, code: int = 1000) -> None:
        """Close the WebSocket (bounded, idempotent)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await self.ws.close(code=code)

    def emit(self, event: ConversationEvent) -> None:
        """A phone has no screen: transcripts and agent text are not sent to Twilio."""
