"""Fast fakes of every upstream of the gateway, in one process, with fixed configurable latencies.

``python -m bench.gateway_bench.fakes --port P`` serves what the gateway calls, exactly as the real
services answer it, so the gateway runs its real code paths while its upstreams cost almost nothing:

* **STT** ``POST /v1/audio/transcriptions/raw`` (:class:`gateway.upstream.speech.STTClient`: raw
  PCM16 body, ``sample_rate``/``encoding``/``language`` query) → ``{"text": …}``, one of
  :data:`TRANSCRIPTS`, after ``--stt-ms``.
* **TTS** ``WS /v1/audio/speech/stream`` (the protocol of :mod:`services.tts.streaming`, as
  :mod:`gateway.upstream.tts_stream` speaks it): ``ready``; ``text`` fragments are cut into
  sentences (the first clause at a comma after 24 characters, as the real segmenter); each
  segment's ``audio`` (8 kHz μ-law, whole 20 ms frames, ``--ms-per-char`` of audio per character)
  goes out ``--tts-first-ms`` after its text is complete, in order; ``flushed``; ``cancelled`` with
  the dropped texts. The audio is **pre-rendered once** at start-up: espeak-ng speaking
  :data:`AGENT_TEXT` (a synthetic harmonic "voice" if espeak-ng is missing), μ-law encoded and cut
  into segments in turn. Its content does not matter to the gateway's cost.
* **LLM** ``POST /v1/chat/completions`` (OpenAI, streamed SSE as vLLM sends it): one of
  :data:`REPLIES`, word by word, first token after ``--llm-ttft-ms``, then one per ``--llm-token-ms``.
* **Turn** ``POST /v1/turn``: raw PCM16 LE mono 16 kHz → ``{"probability": p}`` from the **real**
  Smart Turn model (:func:`turn_probability`, in a thread), so a gateway that sends its end-of-turn
  checks out has their CPU counted here, not in the gateway.
* ``GET /stats`` (request counters) and ``GET /health``.

Nothing here may be used outside benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import logging
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response, StreamingResponse

from shared.audio import TELEPHONY_RATE_HZ, float_to_pcm16, read_audio, ulaw_encode

log = logging.getLogger("bench.fakes")

FRAME_BYTES = 160
"""One 20 ms μ-law frame at 8 kHz."""
TRANSCRIPTS = (
    "Hi, the pipe under my kitchen sink is leaking. Can somebody come out today?",
    "My name is John Smith and I live at 42 Oak Street.",
    "How much does a repair usually cost?",
)
REPLIES = (
    "Sure, we can send a plumber out today. What is your address, please?",
    "Thanks, I have noted that down. What time would suit you best?",
    "The call-out fee is 89 dollars, and it's waived if the job goes ahead. Shall I book it?",
)
AGENT_TEXT = " ".join(REPLIES * 3)
"""What the pre-rendered agent audio says (espeak-ng), reused for every segment."""
_SENTENCE_END = re.compile(r"[.!?]+\s+")
_CLAUSE_END = re.compile(r"[,;:]\s+")
FIRST_CLAUSE_CHARS = 24
"""The first segment of a reply may end at a comma once it is this long (as ``TTS_FIRST_CLAUSE_CHARS``)."""


@dataclass(frozen=True)
class FakeLatencies:
    """Fixed latencies of the fakes, milliseconds, and how much audio a character of text makes."""

    stt_ms: float = 60.0
    llm_ttft_ms: float = 120.0
    llm_token_ms: float = 15.0
    tts_first_ms: float = 120.0
    ms_per_char: float = 60.0


# ---- the real turn model -----------------------------------------------------------------------
_turn_model: Any = None


def turn_probability(pcm16: np.ndarray) -> float:
    """Smart Turn v3's probability (0..1) that the caller has finished, for int16 (n,) at 16 kHz.

    The one place the fakes run a model: swap this function for the STT service's batched router
    to measure that instead. Loads the model on first use (``shared.smart_turn`` where it has moved,
    else ``gateway.conversation.smart_turn``).

    Raises:
        FileNotFoundError: the model is missing (``make models``).
    """
    global _turn_model
    if _turn_model is None:
        try:
            from shared.smart_turn import SmartTurn  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            from gateway.conversation.smart_turn import SmartTurn
        _turn_model = SmartTurn()
    return float(_turn_model.probability(pcm16))


# ---- pre-rendered agent audio -------------------------------------------------------------------
def render_agent_audio(text: str = AGENT_TEXT) -> tuple[bytes, str]:
    """μ-law 8 kHz of ``text`` spoken by espeak-ng; a synthetic voice when espeak-ng is missing.

    Returns (audio, what made it: ``"espeak-ng"`` or ``"synthetic"``).
    """
    espeak = shutil.which("espeak-ng")
    if espeak is not None:
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "agent.wav"
            proc = subprocess.run([espeak, "-v", "en-us", "-s", "165", "-w", str(wav), text], capture_output=True)
            if proc.returncode == 0 and wav.is_file():
                audio, _ = read_audio(str(wav), target_rate=TELEPHONY_RATE_HZ)
                return ulaw_encode(float_to_pcm16(0.7 * audio / max(1e-6, float(np.abs(audio).max())))), "espeak-ng"
    return ulaw_encode(synthetic_voice(30.0)), "synthetic"


def synthetic_voice(seconds: float, rate_hz: int = TELEPHONY_RATE_HZ) -> np.ndarray:
    """A speech-like test signal, int16 (n,): 120 Hz harmonics in 4 Hz syllable bursts."""
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    voice = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 0.5
    return float_to_pcm16(0.25 * voice * envelope)


def split_segments(buffer: str, first: bool) -> tuple[list[str], str]:
    """Complete segments at the front of ``buffer`` and the rest (text still being streamed).

    Sentences end at ``.!?`` followed by whitespace; the first segment of a reply (``first``) may
    also end at a comma, semicolon or colon once it has :data:`FIRST_CLAUSE_CHARS` characters.
    """
    out: list[str] = []
    while True:
        cut = None
        if first and not out:
            for clause in _CLAUSE_END.finditer(buffer):
                if clause.start() >= FIRST_CLAUSE_CHARS:
                    cut = clause.end()
                    break
        sentence = _SENTENCE_END.search(buffer)
        if sentence is not None and (cut is None or sentence.end() < cut):
            cut = sentence.end()
        if cut is None:
            return out, buffer
        segment, buffer = buffer[:cut].strip(), buffer[cut:]
        if segment:
            out.append(segment)


# ---- the TTS stream -----------------------------------------------------------------------------
class _Flush:
    pass


class _TTSSession:
    """One TTS WebSocket: text in, segments out in order after a fixed latency each."""

    def __init__(self, ws: WebSocket, audio: bytes, lat: FakeLatencies, stats: Counter[str]) -> None:
        self.ws = ws
        self.audio = audio
        self.lat = lat
        self.stats = stats
        self.buffer = ""
        self.first = True
        self.segment = 0
        self.turn_segments = 0
        self.offset = 0
        self.outbox: asyncio.Queue[tuple[str, float] | _Flush] = asyncio.Queue()
        self.lock = asyncio.Lock()
        self.sender = asyncio.create_task(self._send_loop())

    async def send(self, message: dict[str, Any]) -> None:
        async with self.lock:
            await self.ws.send_text(json.dumps(message))

    def text(self, fragment: str) -> None:
        segments, self.buffer = split_segments(self.buffer + fragment, self.first)
        self._queue(segments)

    def flush(self) -> None:
        rest, self.buffer = self.buffer.strip(), ""
        self._queue([rest] if rest else [])
        self.outbox.put_nowait(_Flush())
        self.first = True

    def _queue(self, segments: list[str]) -> None:
        due = time.monotonic() + self.lat.tts_first_ms / 1000
        for seg in segments:
            self.outbox.put_nowait((seg, due))
            self.first = False

    async def cancel(self) -> None:
        self.sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.sender
        dropped = [item[0] for item in self._drain() if not isinstance(item, _Flush)]
        if self.buffer.strip():
            dropped.append(self.buffer.strip())
        self.buffer, self.first, self.turn_segments = "", True, 0
        self.stats["tts_cancels"] += 1
        await self.send({"type": "cancelled", "dropped": dropped})
        self.sender = asyncio.create_task(self._send_loop())

    def _drain(self) -> list[tuple[str, float] | _Flush]:
        items = []
        while not self.outbox.empty():
            items.append(self.outbox.get_nowait())
        return items

    def _cut(self, text: str) -> bytes:
        """The next slice of the pre-rendered audio for ``text``: whole frames, ≥ 1."""
        frames = max(1, round(len(text) * self.lat.ms_per_char / 20))
        n = frames * FRAME_BYTES
        if self.offset + n > len(self.audio):
            self.offset = 0
        chunk = self.audio[self.offset : self.offset + n]
        self.offset += n
        return chunk.ljust(n, b"\xff")

    async def _send_loop(self) -> None:
        while True:
            item = await self.outbox.get()
            if isinstance(item, _Flush):
                await self.send({"type": "flushed", "segments": self.turn_segments})
                self.turn_segments = 0
                continue
            text, due = item
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            audio = self._cut(text)
            message = {
                "type": "audio",
                "segment": self.segment,
                "text": text,
                "spoken": text,
                "audio": base64.b64encode(audio).decode("ascii"),
                "format": "mulaw",
                "sample_rate": TELEPHONY_RATE_HZ,
                "samples": len(audio),
                "duration_ms": len(audio) / 8,
            }
            self.segment += 1
            self.turn_segments += 1
            self.stats["tts_segments"] += 1
            self.stats["tts_frames"] += len(audio) // FRAME_BYTES
            await self.send(message)

    async def close(self) -> None:
        self.sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.sender


# ---- the app ----------------------------------------------------------------------------------
def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> str:
    data = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(data)}\n\n"


def create_app(lat: FakeLatencies, audio: bytes, audio_source: str = "", load_turn_model: bool = True) -> FastAPI:
    """The fakes' app; ``audio``: the pre-rendered μ-law the TTS fake cuts its segments from
    (``audio_source`` says what rendered it, for ``/stats``)."""
    stats: Counter[str] = Counter()
    transcripts = itertools.cycle(TRANSCRIPTS)
    replies = itertools.cycle(REPLIES)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if load_turn_model:  # the first turn check should not pay for loading the model
            await asyncio.to_thread(turn_probability, np.zeros(16000, dtype=np.int16))
        yield

    app = FastAPI(title="gateway bench fakes", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/stats")
    async def get_stats() -> dict[str, Any]:
        return {**stats, "audio_source": audio_source, "latencies": asdict(lat)}

    @app.post("/v1/audio/transcriptions/raw")
    async def transcribe(request: Request) -> dict[str, str]:
        await request.body()
        stats["stt_requests"] += 1
        await asyncio.sleep(lat.stt_ms / 1000)
        return {"text": next(transcripts)}

    @app.post("/v1/turn")
    async def turn(request: Request) -> dict[str, float]:
        pcm = np.frombuffer(await request.body(), dtype="<i2").astype(np.int16)
        stats["turn_checks"] += 1
        return {"probability": await asyncio.to_thread(turn_probability, pcm)}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> Response:
        body = await request.json()
        stats["llm_requests"] += 1
        model = str(body.get("model", "fake"))
        text = next(replies)
        words = text.split(" ")
        if not body.get("stream"):
            await asyncio.sleep((lat.llm_ttft_ms + lat.llm_token_ms * len(words)) / 1000)
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return JSONResponse(
                {"id": "chatcmpl-fake", "object": "chat.completion", "model": model, "choices": [choice]}
            )

        async def events() -> Any:
            await asyncio.sleep(lat.llm_ttft_ms / 1000)
            yield _chunk(model, {"role": "assistant", "content": ""})
            for i, word in enumerate(words):
                if i:
                    await asyncio.sleep(lat.llm_token_ms / 1000)
                yield _chunk(model, {"content": word if i == 0 else " " + word})
            yield _chunk(model, {}, "stop") + "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.websocket("/v1/audio/speech/stream")
    async def tts_stream(ws: WebSocket) -> None:
        await ws.accept()
        fmt, rate = ws.query_params.get("format", "pcm"), int(ws.query_params.get("sample_rate", "8000"))
        if fmt != "mulaw" or rate != TELEPHONY_RATE_HZ:
            error = {"message": "the fake TTS speaks mulaw at 8000 Hz only", "type": "invalid_request_error"}
            await ws.send_text(json.dumps({"type": "error", "error": error}))
            await ws.close(code=1008)
            return
        voice = ws.query_params.get("voice", "af_heart")
        ready = {"type": "ready", "voice": voice, "format": "mulaw", "sample_rate": rate, "sample_width": 1}
        await ws.send_text(json.dumps({**ready, "frame_ms": 20}))
        stats["tts_connections"] += 1
        session = _TTSSession(ws, audio, lat, stats)
        try:
            while True:
                msg = json.loads(await ws.receive_text())
                kind = msg.get("type")
                if kind == "text":
                    session.text(str(msg.get("text", "")))
                elif kind == "flush":
                    session.flush()
                elif kind == "cancel":
                    await session.cancel()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            await session.close()

    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the fakes in the foreground on ``127.0.0.1:--port``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    defaults = FakeLatencies()
    for name in ("stt_ms", "llm_ttft_ms", "llm_token_ms", "tts_first_ms", "ms_per_char"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    p.add_argument("--no-turn-model", action="store_true", help="do not load Smart Turn (no /v1/turn)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s fakes %(message)s")
    lat = FakeLatencies(args.stt_ms, args.llm_ttft_ms, args.llm_token_ms, args.tts_first_ms, args.ms_per_char)
    audio, source = render_agent_audio()
    log.info("agent audio: %.1f s pre-rendered by %s; latencies %s", len(audio) / TELEPHONY_RATE_HZ, source, lat)
    app = create_app(lat, audio, source, load_turn_model=not args.no_turn_model)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", ws_max_size=1 << 22)


if __name__ == "__main__":
    main()
