"""The WebSocket voice API as a :class:`~gateway.conversation.transport.Transport` (``/ws/conversation``).

In: binary messages are pieces of one compressed stream from the browser's ``MediaRecorder``
(WebM/Opus; Ogg/Opus), decoded to PCM16 16 kHz (:mod:`gateway.browser.decoder`); JSON messages
are the protocol's (:mod:`gateway.browser.protocol`): ``ping`` is answered here, ``text`` becomes
:class:`TextIn`, ``end_conversation`` ends the call (its ``analysis`` follows, sent by the route).
A malformed message gets an ``error`` event and is skipped; the session goes on.

Out: the agent's audio as binary PCM16 LE mono at ``GATEWAY_BROWSER__OUTPUT_RATE_HZ``, 20 ms a
message, paced in real time (:class:`~gateway.browser.outbound.Pacer`), each reply announced by
``ai_audio_start``; on barge-in ``interrupted`` tells the client to drop what it buffered. Text
events (transcripts, agent text, turn ends) go out as they happen. Every outgoing message goes
through one writer task, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from fastapi import WebSocket, WebSocketDisconnect

from gateway.browser.decoder import StreamDecoder
from gateway.browser.outbound import OutboundAudio, Pacer
from gateway.browser.protocol import client_event, conversation_event, event
from gateway.config import GatewaySettings
from gateway.conversation.transport import (
    AudioFormat,
    AudioIn,
    CallerLeft,
    CallStarted,
    ConversationEvent,
    MarkPlayed,
    PlayoutHooks,
    TransportEvent,
)
from gateway.metrics import MALFORMED

log = logging.getLogger(__name__)

INPUT_RATE_HZ = 16000
"""The rate caller audio is decoded to (the VAD's and STT's: no second resampling)."""


class WebSocketTransport:
    """One ``/ws/conversation`` connection (an accepted WebSocket).

    Args:
        ws: the accepted WebSocket.
        settings: ``browser`` (output rate, pacing lead, message size cap).
        call_id: the session id (``connected.session_id``, the call's id in the record).
        from_, to: what the record says the call is from and to.
    """

    input_rate_hz = INPUT_RATE_HZ
    echo_cancelled = True  # MediaRecorder's getUserMedia runs the browser's echo canceller

    def __init__(self, ws: WebSocket, settings: GatewaySettings, call_id: str, from_: str, to: str) -> None:
        self.ws = ws
        self.s = settings.browser
        self.output_format = AudioFormat("pcm16", self.s.output_rate_hz, 20)
        self.call_id = call_id
        self._start = CallStarted(call_id=call_id, stream_id=call_id, from_=from_, to=to)
        self._events: asyncio.Queue[TransportEvent | None] = asyncio.Queue()
        self._outbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._hooks: PlayoutHooks | None = None
        self.out = OutboundAudio(self.output_format)
        self._pacer = Pacer(self.out, self._send_audio, self._mark_played, lambda: self._hooks, self._reply_start,
                            self.s.playback_lead_ms)  # fmt: skip
        self._decoder: StreamDecoder | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._started = False
        self.ended_by_client = False
        """The client sent ``end_conversation`` (it waits for ``analysis``)."""
        self.closed = False

    # ---- lifetime (the route's) ----------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[WebSocketTransport]:
        """Run the reader and the writer while the block runs; then flush (bounded) and stop them."""
        self._decoder = StreamDecoder(self.input_rate_hz, self._on_audio, self._on_decode_error)
        self._tasks = [
            asyncio.create_task(self._read(), name=f"ws-read-{self.call_id}"),
            asyncio.create_task(self._write(), name=f"ws-write-{self.call_id}"),
        ]
        try:
            yield self
        finally:
            self._decoder.close()
            self._outbox.put_nowait(None)
            writer = self._tasks[1]
            with contextlib.suppress(Exception):
                await asyncio.wait({writer}, timeout=2.0)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def send_event(self, kind: str, **fields: Any) -> None:
        """Queue one JSON event for the client (never blocks)."""
        self._outbox.put_nowait(event(kind, **fields))

    # ---- input ----------------------------------------------------------------------------------
    async def _read(self) -> None:
        try:
            while True:
                msg = await self.ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                data = msg.get("bytes")
                if data is not None:
                    self._on_bytes(data)
                elif msg.get("text") is not None:
                    self._on_text(msg["text"])
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self._events.put_nowait(CallerLeft())

    def _on_bytes(self, data: bytes) -> None:
        if len(data) > self.s.max_audio_message_bytes:
            MALFORMED.inc()
            self.send_event("error", message=f"audio message larger than {self.s.max_audio_message_bytes} bytes")
            return
        if self._decoder is not None:
            self._decoder.feed(data)

    def _on_text(self, raw: str) -> None:
        ev = client_event(raw, self.send_event, self.call_id)
        if isinstance(ev, CallerLeft):
            self.ended_by_client = True
        if ev is not None:
            self._events.put_nowait(ev)

    def _on_audio(self, pcm: np.ndarray) -> None:
        if not self.closed:
            self._events.put_nowait(AudioIn(pcm))

    def _on_decode_error(self, message: str) -> None:
        self.send_event("error", message=message)

    async def receive(self) -> TransportEvent | None:
        """:class:`CallStarted` first, then caller audio, text, marks; ``None`` once closed."""
        if not self._started:
            self._started = True
            return self._start
        if self.closed:
            return None
        return await self._events.get()

    # ---- output ---------------------------------------------------------------------------------
    async def _write(self) -> None:
        while True:
            item = await self._outbox.get()
            if item is None:
                return
            try:
                if isinstance(item, bytes):
                    await self.ws.send_bytes(item)
                else:
                    await self.ws.send_text(item)
            except Exception:  # the client is gone: drop the rest, the reader ends the call
                return

    async def _send_audio(self, frame: bytes) -> None:
        self._outbox.put_nowait(frame)

    async def _reply_start(self, reply_id: str) -> None:
        self.send_event("ai_audio_start", sample_rate=self.output_format.sample_rate_hz, reply_id=reply_id)

    def _mark_played(self, name: str) -> None:
        self._events.put_nowait(MarkPlayed(name))

    def bind(self, hooks: PlayoutHooks) -> None:
        """Who hears about playout."""
        self._hooks = hooks

    def play(self, audio: bytes, reply_id: str) -> None:
        """Queue PCM16 audio at the output rate of reply ``reply_id``."""
        self.out.play(audio, reply_id)

    def mark(self, name: str) -> None:
        """Queue a mark; it is reported played once the audio before it has played at the client."""
        self.out.mark(name)

    async def clear(self) -> None:
        """Barge-in: drop the queued audio and tell the client to drop its buffer (``interrupted``)."""
        self.out.clear()
        self.send_event("interrupted")

    def pause(self) -> None:
        """Hold the agent's audio (caller speech over it; :class:`~gateway.browser.outbound.OutboundAudio`)."""
        self.out.pause()

    def resume(self) -> None:
        """Play the held audio on from where it stopped."""
        self.out.resume()

    @property
    def pending(self) -> int:
        """Frames and marks not yet sent."""
        return self.out.pending

    async def run_output(self) -> None:
        """Pace the agent's audio out until cancelled."""
        await self._pacer.run()

    def emit(self, ev: ConversationEvent) -> None:
        """Send a transcript, agent text or turn end as its JSON event."""
        text = conversation_event(ev)
        if text is not None:
            self._outbox.put_nowait(text)

    async def close(self, code: int = 1000) -> None:
        """The call is over: no more events. The socket itself is closed by the route (after
        ``analysis`` when the client asked for it)."""
        self.closed = True
        self._events.put_nowait(None)
