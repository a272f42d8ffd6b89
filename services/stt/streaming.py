"""``WS /v1/audio/stream``: streaming transcription by re-decoding a growing buffer.

Protocol (query: ``sample_rate`` Hz of the client's PCM16, default 16000; ``language``;
``prompt``; ``interval_ms`` of new audio between partials, default ``STT_STREAM_INTERVAL_MS``):

- client → server: binary frames of PCM16 little-endian mono samples (any length; an odd trailing
  byte is kept for the next frame); text ``{"type": "end"}`` when the utterance is over.
- server → client: ``{"type": "partial", "text", "audio_seconds"}`` each time ``interval_ms`` of new
  audio has arrived (the last ≤ 30 s re-decoded through the same batching scheduler, so many
  streams share batches; at most one partial in flight per stream, a partial still in flight at
  ``end`` is sent first); then ``{"type": "final", "text", "audio_seconds"}`` over the whole
  buffer, and the server closes with 1000.
- errors: ``{"type": "error", "error": {OpenAI-shaped}}`` then close (1008 bad query parameter,
  e.g. an unsupported ``language``; 1013 the model did not load; 1009 too long; 1011 other). A text frame that is not
  ``{"type": "end"}`` (invalid JSON, a JSON value that is not an object, another ``type``) gets an
  error (``code: "bad_message"``) and the connection stays open.

Input is resampled to 16 kHz as it arrives (``shared.audio.Resampler``, soxr streaming).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from services.stt.decoding import SAMPLE_RATE_HZ
from services.stt.engine import WINDOW_SECONDS
from services.stt.routes import check_language, stt_service, transcribe_audio
from shared.audio import Resampler, pcm16_to_float
from shared.errors import APIError

log = logging.getLogger(__name__)
router = APIRouter()


class _Stream:
    """One connection's audio buffer (float32 16 kHz chunks) and partial-decode bookkeeping."""

    def __init__(self, ws: WebSocket, sample_rate: int, options: dict[str, Any], interval_s: float) -> None:
        self.ws = ws
        self.options = options
        self.interval_samples = int(interval_s * SAMPLE_RATE_HZ)
        self.resampler = Resampler(sample_rate, SAMPLE_RATE_HZ, dtype="float32")
        self.chunks: list[np.ndarray] = []
        self.samples = 0
        self.last_partial_at = 0
        self.odd = b""
        self.partial: asyncio.Task[None] | None = None
        self.send_lock = asyncio.Lock()

    def add(self, data: bytes) -> None:
        data = self.odd + data
        cut = len(data) - len(data) % 2
        self.odd = data[cut:]
        if cut:
            chunk = self.resampler.process(pcm16_to_float(np.frombuffer(data[:cut], dtype="<i2").astype(np.int16)))
            self.chunks.append(chunk)
            self.samples += chunk.size

    def audio(self, last_seconds: float | None = None) -> np.ndarray:
        audio = np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.float32)
        self.chunks = [audio]
        if last_seconds is not None:
            audio = audio[-int(last_seconds * SAMPLE_RATE_HZ) :]
        return audio

    async def send(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.ws.send_json(message)

    def maybe_partial(self) -> None:
        if self.partial is not None and not self.partial.done():
            return
        if self.samples - self.last_partial_at < self.interval_samples:
            return
        self.last_partial_at = self.samples
        self.partial = asyncio.create_task(self._partial(self.audio(WINDOW_SECONDS)))

    async def _partial(self, audio: np.ndarray) -> None:
        try:
            result, _ = await transcribe_audio(stt_service(self.ws.app), audio, self.options, "stream_partial")
        except APIError as exc:  # a partial is best effort: a full queue just skips it
            log.debug("partial skipped: %s", exc.message)
            return
        seconds = round(audio.size / SAMPLE_RATE_HZ, 3)
        await self.send({"type": "partial", "text": result.text, "audio_seconds": seconds})

    async def final(self) -> None:
        if self.partial is not None:
            with contextlib.suppress(Exception):
                await self.partial
        tail = self.resampler.flush()
        if tail.size:
            self.chunks.append(tail)
        audio = self.audio()
        if audio.size == 0:
            await self.send({"type": "final", "text": "", "audio_seconds": 0.0})
            return
        result, _ = await transcribe_audio(stt_service(self.ws.app), audio, self.options, "stream_final")
        await self.send({"type": "final", "text": result.text, "audio_seconds": round(audio.size / SAMPLE_RATE_HZ, 3)})


@router.websocket("/v1/audio/stream")
async def stream(
    ws: WebSocket,
    sample_rate: int = SAMPLE_RATE_HZ,
    language: str | None = None,
    prompt: str | None = None,
    interval_ms: float | None = None,
) -> None:
    """Streaming transcription (protocol in the module docstring)."""
    await ws.accept()
    service = stt_service(ws.app)
    settings = service.settings
    try:
        if not 4000 <= sample_rate <= 192000 or (interval_ms is not None and interval_ms <= 0):
            raise APIError(400, "sample_rate must be 4000..192000 Hz and interval_ms > 0", param="sample_rate")
        language = await check_language(service, language, "stream")
    except APIError as exc:
        await ws.send_json({"type": "error", **exc.body()})
        await ws.close(1008 if exc.status < 500 else 1013)  # 1013: try again later (model not loaded)
        return
    interval_s = (interval_ms or settings.stream_interval_ms) / 1000.0
    st = _Stream(ws, sample_rate, {"language": language, "prompt": prompt}, interval_s)
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            if msg.get("bytes") is not None:
                st.add(msg["bytes"])
                if st.samples > settings.max_audio_seconds * SAMPLE_RATE_HZ:
                    err = APIError(413, f"stream exceeds {settings.max_audio_seconds:.0f}s", code="audio_too_long")
                    await st.send({"type": "error", **err.body()})
                    await ws.close(1009)
                    return
                st.maybe_partial()
                continue
            if not _is_end(msg.get("text")):
                err = APIError(400, 'text frames must be {"type": "end"}', param="type", code="bad_message")
                await st.send({"type": "error", **err.body()})
                continue
            try:
                await st.final()
            except APIError as exc:
                await st.send({"type": "error", **exc.body()})
                await ws.close(1011)
                return
            await ws.close(1000)
            return
    except WebSocketDisconnect:
        return
    finally:
        if st.partial is not None and not st.partial.done():
            st.partial.cancel()


def _is_end(text: str | None) -> bool:
    """Whether a text frame is the protocol's ``{"type": "end"}`` (anything else is a bad message)."""
    try:
        event = json.loads(text or "")
    except json.JSONDecodeError:
        return False
    return isinstance(event, dict) and event.get("type") == "end"
