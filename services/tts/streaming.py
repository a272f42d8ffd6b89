"""``WS /v1/audio/speech/stream`` — incremental TTS for the gateway's hot path.

Protocol (JSON text frames both ways; one connection = one call leg, many turns)
==============================================================================

Open: ``ws://HOST:8002/v1/audio/speech/stream?voice=af_heart&format=mulaw&sample_rate=8000&speed=1.0``

=============  ============================================  ==========================================
query param    values                                        default
=============  ============================================  ==========================================
``voice``      a Kokoro voice or OpenAI alias                ``TTS_DEFAULT_VOICE``
``format``     ``pcm`` (PCM16 LE mono) or ``mulaw`` (G.711)  ``pcm``
``sample_rate`` ``8000`` | ``16000`` | ``24000`` (Hz)         24000 for ``pcm``, 8000 for ``mulaw``
``speed``      0.5 – 2.0                                     1.0
=============  ============================================  ==========================================

Server → client, first: ``{"type": "ready", "voice": "af_heart", "format": "mulaw", "sample_rate": 8000,
"sample_width": 1, "frame_ms": 20}``. Invalid parameters instead get ``{"type": "error", "error":
{...}}`` (OpenAI-shaped body, e.g. unknown voice → message lists the voices) and close code 1008.

Client → server:

* ``{"type": "text", "text": "Sure, your appointment is at"}`` — a fragment (any size, e.g. LLM
  tokens). The server splits the accumulated text into sentences/clauses
  (:mod:`services.tts.segmenter`: the first segment of a turn may end at a comma after
  ``TTS_FIRST_CLAUSE_CHARS`` characters, 4 by default)
  and queues each complete segment for synthesis at once.
* ``{"type": "flush"}`` — end of the turn: whatever text is buffered is spoken too, then the server
  answers ``flushed`` after the last audio of the turn.
* ``{"type": "cancel"}`` — barge-in: drop buffered text and every queued synthesis at once (a model
  pass already running finishes but its audio is discarded); no ``audio`` of the cancelled text is
  sent after the ``cancelled`` reply. The connection stays open for the next turn.
* closing the socket cancels everything in flight.

Server → client:

* ``{"type": "audio", "segment": 3, "text": "Call 555-123-4567.", "spoken": "Call five five five, …",
  "audio": "<base64>", "format": "mulaw", "sample_rate": 8000, "samples": 15040, "duration_ms": 1880.0}``
  — one message per segment, in order. ``text`` is the segment exactly as the client sent it (so the
  gateway knows what the caller heard), ``spoken`` what was synthesised after normalisation;
  ``segment`` counts from 0 over the connection. ``audio`` is headerless: μ-law bytes or PCM16 LE;
  each message holds a whole number of 20 ms frames (the last frame of a segment is padded with
  silence), so at ``mulaw``/8000 the payload splits into 160-byte frames that can go straight into
  Twilio ``media`` messages.
* ``{"type": "flushed", "segments": 4}`` — all audio of the turn ended by a ``flush`` was sent
  (``segments``: how many audio messages the turn produced).
* ``{"type": "cancelled", "dropped": ["text not spoken", …]}`` — reply to ``cancel``; ``dropped`` lists
  queued segments whose audio was never sent (the buffered, unsegmented text is dropped too).
* ``{"type": "error", "error": {"message", "type", "param", "code"}}`` — a bad message (invalid JSON,
  a JSON value that is not an object, unknown type, ``text`` that is not a string, a binary frame,
  text over ``TTS_MAX_INPUT_CHARS``) or a segment refused because the server is overloaded
  (``code: "overloaded"``, the segment is skipped; only when the queue is full and the connection
  has nothing queued: later segments of a long text wait their turn, at most ``LOOKAHEAD_SEGMENTS``
  of them queued at once). The connection stays open.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from services.tts.codecs import AudioFormat, encode_chunk, frame_align, pad_bytes
from services.tts.engine import KokoroEngine, UnknownVoiceError
from services.tts.feed import FeedItem
from services.tts.metrics import CANCELLED, REQUESTS, TTFA
from services.tts.routes import queue_full, unknown_voice
from services.tts.segmenter import SentenceSplitter
from shared.errors import APIError, QueueFullError

log = logging.getLogger(__name__)
router = APIRouter()

_RATES = (8000, 16000, 24000)


@dataclass
class _Flush:
    pass


@dataclass(frozen=True)
class StreamParams:
    """Validated query parameters of one connection."""

    voice: str
    fmt: AudioFormat
    sample_rate: int
    speed: float


def parse_params(engine: KokoroEngine, query: dict[str, str]) -> StreamParams:
    """Validate the connection's query parameters.

    Raises:
        APIError: 400 for an unknown voice (listing the voices), format, rate or speed.
    """
    try:
        voice = engine.resolve_voice(query.get("voice"))
    except UnknownVoiceError as exc:
        raise unknown_voice(engine, query.get("voice")) from exc
    fmt_name = query.get("format", query.get("response_format", "pcm"))
    if fmt_name not in ("pcm", "mulaw"):
        raise APIError(400, f"format must be pcm or mulaw, not {fmt_name!r}", param="format")
    fmt = AudioFormat(fmt_name)
    try:
        rate = int(query.get("sample_rate", 8000 if fmt is AudioFormat.mulaw else 24000))
        speed = float(query.get("speed", 1.0))
    except ValueError as exc:
        raise APIError(400, f"bad number: {exc}", param="sample_rate") from exc
    if rate not in _RATES:
        raise APIError(400, f"sample_rate must be one of {_RATES}", param="sample_rate")
    if not 0.5 <= speed <= 2.0:
        raise APIError(400, "speed must be between 0.5 and 2.0", param="speed")
    return StreamParams(voice, fmt, rate, speed)


class _Session:
    """State of one WebSocket: the splitter, the ordered outbox of segments, and the sender task."""

    def __init__(self, ws: WebSocket, engine: KokoroEngine, params: StreamParams) -> None:
        self.ws = ws
        self.engine = engine
        self.params = params
        self.splitter = SentenceSplitter(
            engine.settings.first_clause_chars, engine.settings.segment_max_chars, engine.settings.first_phrase_words
        )
        self.feed = engine.feed(params.voice, params.speed)
        self.outbox: asyncio.Queue[FeedItem | _Flush] = asyncio.Queue()
        self.send_lock = asyncio.Lock()
        self.segment_index = 0
        self.turn_segments = 0
        self.turn_started: float | None = None
        self.current: FeedItem | None = None
        """The segment the sender is waiting for or sending (not yet fully sent)."""
        self.sender = asyncio.create_task(self._send_loop())

    async def send(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.ws.send_text(json.dumps(message))

    async def error(self, err: APIError) -> None:
        await self.send({"type": "error", **err.body()})

    def _queue(self, segments: list[str], last_unpaused: bool = False) -> list[APIError]:
        """Hand complete segments to the feed and the outbox.

        Only when the connection had nothing waiting, queued or running and the queue is full now
        are the segments refused (one ``overloaded`` error each, skipped); otherwise they wait
        behind the connection's earlier segments, however many there are.
        """
        if not segments:
            return []
        was_idle = self.feed.idle
        items = [
            self.feed.add(seg, pause=not (last_unpaused and i == len(segments) - 1)) for i, seg in enumerate(segments)
        ]
        try:
            self.feed.admit()
        except QueueFullError as exc:
            if was_idle:
                self.feed.cancel()
                return [queue_full(exc) for item in items if item.spoken]
        if self.turn_started is None:
            self.turn_started = time.perf_counter()
        for item in items:
            self.outbox.put_nowait(item)
        return []

    async def on_text(self, text: str) -> None:
        limit = self.engine.settings.max_input_chars
        if len(text) > limit or len(self.splitter.buffered) + len(text) > limit:
            await self.error(
                APIError(413, f"text over the limit of {limit} characters", param="text", code="input_too_long")
            )
            return
        for err in self._queue(self.splitter.feed(text)):
            await self.error(err)

    async def on_flush(self) -> None:
        for err in self._queue(self.splitter.flush(), last_unpaused=True):
            await self.error(err)
        self.outbox.put_nowait(_Flush())

    async def on_cancel(self) -> None:
        self.sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.sender
        dropped = [self.current.text] if self.current is not None else []
        self.current = None
        dropped += self._drain()
        self.splitter.reset()
        self.turn_segments = 0
        self.turn_started = None
        CANCELLED.labels("stream").inc()
        await self.send({"type": "cancelled", "dropped": dropped})
        self.sender = asyncio.create_task(self._send_loop())

    def _drain(self) -> list[str]:
        dropped = []
        while not self.outbox.empty():
            item = self.outbox.get_nowait()
            if isinstance(item, FeedItem):
                dropped.append(item.text)
        self.feed.cancel()
        return dropped

    async def close(self) -> None:
        self.sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.sender
        self._drain()

    async def _send_loop(self) -> None:
        while True:
            item = await self.outbox.get()
            if isinstance(item, _Flush):
                await self.send({"type": "flushed", "segments": self.turn_segments})
                self.turn_segments = 0
                self.turn_started = None
                continue
            if not item.spoken:
                continue
            self.current = item
            try:
                audio = await self.feed.result(item)
            except asyncio.CancelledError:
                if item.future is not None:
                    item.future.cancel()
                raise
            except Exception as exc:  # a failed synthesis skips its segment, the stream goes on
                log.exception("synthesis of %r failed", item.spoken)
                self.current = None
                await self.error(
                    APIError(500, f"synthesis failed: {exc}", type="server_error", code="synthesis_failed")
                )
                continue
            if audio.size:
                await self._send_audio(item, audio)
            self.current = None

    async def _send_audio(self, seg: FeedItem, audio: np.ndarray) -> None:
        p = self.params
        data = pad_bytes(encode_chunk(frame_align(audio), p.fmt, p.sample_rate), p.fmt, p.sample_rate)
        width = 1 if p.fmt is AudioFormat.mulaw else 2
        if self.turn_segments == 0 and self.turn_started is not None:
            TTFA.labels("stream").observe(time.perf_counter() - self.turn_started)
        await self.send(
            {
                "type": "audio",
                "segment": self.segment_index,
                "text": seg.text,
                "spoken": seg.spoken,
                "audio": base64.b64encode(data).decode("ascii"),
                "format": p.fmt.value,
                "sample_rate": p.sample_rate,
                "samples": len(data) // width,
                "duration_ms": len(data) / width / p.sample_rate * 1000.0,
            }
        )
        self.segment_index += 1
        self.turn_segments += 1


@router.websocket("/v1/audio/speech/stream")
async def speech_stream(ws: WebSocket) -> None:
    """Serve one streaming-TTS connection; see the module docstring for the protocol."""
    engine: KokoroEngine = ws.app.state.engine
    await ws.accept()
    try:
        params = parse_params(engine, dict(ws.query_params))
    except APIError as exc:
        REQUESTS.labels("stream", "bad_request").inc()
        await ws.send_text(json.dumps({"type": "error", **exc.body()}))
        await ws.close(code=1008)
        return
    session = _Session(ws, engine, params)
    REQUESTS.labels("stream", "opened").inc()
    await session.send(
        {
            "type": "ready",
            "voice": params.voice,
            "format": params.fmt.value,
            "sample_rate": params.sample_rate,
            "sample_width": 1 if params.fmt is AudioFormat.mulaw else 2,
            "frame_ms": 20,
        }
    )
    try:
        while True:
            frame = await ws.receive()
            if frame["type"] == "websocket.disconnect":
                break
            raw = frame.get("text")
            if raw is None:  # a binary frame: not part of this protocol, but no reason to hang up
                await session.error(
                    APIError(400, "binary frames are not accepted; send JSON text frames", code="bad_message")
                )
                continue
            await _dispatch(session, raw)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        await session.close()


async def _dispatch(session: _Session, raw: str) -> None:
    """Handle one text frame; anything but a JSON object of a known ``type`` gets an error reply."""
    try:
        msg = json.loads(raw)
    except json.JSONDecodeError:
        msg = None
    kind = msg.get("type") if isinstance(msg, dict) else None
    if kind == "text" and isinstance(msg, dict) and isinstance(msg.get("text"), str):
        await session.on_text(msg["text"])
    elif kind == "flush":
        await session.on_flush()
    elif kind == "cancel":
        await session.on_cancel()
    else:
        await session.error(
            APIError(400, "expected a JSON object with type text|flush|cancel", param="type", code="bad_message")
        )
