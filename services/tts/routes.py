"""HTTP glue of the TTS service: ``/v1/audio/speech``, voices, health, readiness, GPU.

Errors are OpenAI-shaped (:mod:`shared.errors`): 400 empty input, unknown voice (the message lists
the voices) or invalid field; 413 input over ``TTS_MAX_INPUT_CHARS``; 503 queue full (with
``Retry-After``) — only when the queue is full before any segment of the request got in: a long
input is queued a few segments at a time (:mod:`services.tts.feed`), so it never needs a retry on
an idle server. A client that disconnects cancels its queued syntheses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from services.tts.codecs import MEDIA_TYPES, STREAMABLE, AudioFormat, encode_chunk, encode_whole, streaming_wav_header
from services.tts.engine import OPENAI_VOICE_ALIASES, SAMPLE_RATE_HZ, KokoroEngine, SegmentJob, UnknownVoiceError
from services.tts.feed import FeedItem, SegmentFeed
from services.tts.metrics import AUDIO, CANCELLED, LATENCY, REQUESTS, RTF, TTFA
from services.tts.normalize import normalize_for_speech
from services.tts.schemas import Health, Ready, SpeechRequest, VoiceInfo, VoicesResponse
from services.tts.segmenter import split_text
from shared.disconnect import ClientDisconnected, cancel_on_disconnect
from shared.errors import CLIENT_CLOSED_REQUEST, APIError, QueueFullError
from shared.gpu import GPUInfo, gpu_info

router = APIRouter()


def engine_of(request_or_app_state: Request) -> KokoroEngine:
    """The engine the lifespan put on ``app.state``."""
    engine: KokoroEngine = request_or_app_state.app.state.engine
    return engine


def unknown_voice(engine: KokoroEngine, voice: str | None) -> APIError:
    """400 listing the available voices (OpenAI-shaped)."""
    return APIError(
        400, f"unknown voice {voice!r}; available: {', '.join(engine.voices)}", param="voice", code="unknown_voice"
    )


def queue_full(exc: QueueFullError) -> APIError:
    """503 ``overloaded`` with ``Retry-After`` (the error's ``retry_after_s``, 1 s)."""
    return APIError(
        503,
        f"TTS is overloaded: {exc}",
        type="server_error",
        code="overloaded",
        headers={"Retry-After": str(exc.retry_after_s)},
    )


@router.get("/health", response_model=Health)
async def health(request: Request) -> Health:
    """Liveness: the model is loaded."""
    engine = engine_of(request)
    return Health(
        status="ok",
        voices=len(engine.voices),
        sample_rate=SAMPLE_RATE_HZ,
        backend=engine.backend.name,
        device=engine.backend.device,
    )


@router.get("/ready", response_model=Ready, responses={503: {"model": Ready}})
async def ready(request: Request) -> Response:
    """Readiness: 200 while the queue has room, 503 (``status="busy"``) when it is full."""
    engine = engine_of(request)
    sched = engine.scheduler
    busy = sched.depth >= sched.max_queue
    body = Ready(
        status="busy" if busy else "ready", queue_depth=sched.depth, max_queue=sched.max_queue, inflight=sched.inflight
    )
    return JSONResponse(body.model_dump(), status_code=503 if busy else 200)


@router.get("/v1/audio/voices", response_model=VoicesResponse)
async def voices(request: Request) -> VoicesResponse:
    """Every voice in the voices file, with language and gender from Kokoro's naming (``af_heart``)."""
    engine = engine_of(request)
    langs = {"a": "en-us", "b": "en-gb", "e": "es", "f": "fr", "h": "hi", "i": "it", "j": "ja", "p": "pt-br", "z": "zh"}
    genders = {"f": "female", "m": "male"}
    out = [
        VoiceInfo(id=v, language=langs.get(v[:1], "unknown"), gender=genders.get(v[1:2], "unknown"))  # type: ignore[arg-type]
        for v in engine.voices
    ]
    aliases = {k: v for k, v in OPENAI_VOICE_ALIASES.items() if v in engine.voices}
    return VoicesResponse(default=engine.settings.default_voice, voices=out, aliases=aliases)


@router.get("/gpu", response_model=GPUInfo)
async def gpu(request: Request) -> GPUInfo:
    """Device, GPU memory used/total (MiB) and utilisation (%); ``device="cpu"`` and nulls on CPU."""
    engine = engine_of(request)
    device = engine.backend.device
    return await asyncio.to_thread(gpu_info, device if device == "cpu" else engine.settings.device)


def _validate(engine: KokoroEngine, body: SpeechRequest) -> tuple[str, str, int]:
    text = body.input.strip()
    if not text:
        raise APIError(400, "input is empty", param="input", code="empty_input")
    limit = engine.settings.max_input_chars
    if len(text) > limit:
        raise APIError(
            413, f"input has {len(text)} characters; the limit is {limit}", param="input", code="input_too_long"
        )
    if not normalize_for_speech(text):
        raise APIError(400, "input has nothing to speak (only symbols or emojis)", param="input", code="empty_input")
    try:
        voice = engine.resolve_voice(body.voice)
    except UnknownVoiceError as exc:
        raise unknown_voice(engine, body.voice) from exc
    rate = body.sample_rate or (8000 if body.response_format is AudioFormat.mulaw else SAMPLE_RATE_HZ)
    return text, voice, rate


@router.post("/v1/audio/speech")
async def speech(body: SpeechRequest, request: Request) -> Response:
    """OpenAI-compatible speech.

    ``pcm`` (raw PCM16 LE mono), ``mulaw`` (raw G.711 μ-law) and ``wav`` are streamed with chunked
    transfer, one chunk per sentence/clause as soon as it is synthesised; ``mp3``, ``opus`` (Ogg) and
    ``flac`` are sent whole. Headers: ``X-Sample-Rate`` (Hz), ``X-Audio-Format``.
    """
    engine = engine_of(request)
    try:
        text, voice, rate = _validate(engine, body)
    except APIError as exc:
        REQUESTS.labels("speech", "bad_request").inc()
        raise exc
    fmt = body.response_format
    segments = split_text(
        text, engine.settings.first_clause_chars, engine.settings.segment_max_chars, engine.settings.first_phrase_words
    )
    feed = engine.feed(voice, body.speed)
    items = [feed.add(seg, pause=i < len(segments) - 1) for i, seg in enumerate(segments)]
    try:
        feed.admit()
    except QueueFullError as exc:
        feed.cancel()
        REQUESTS.labels("speech", "overloaded").inc()
        raise queue_full(exc) from exc
    headers = {"X-Sample-Rate": str(rate), "X-Audio-Format": fmt.value}
    started = time.perf_counter()
    if fmt in STREAMABLE:
        return StreamingResponse(
            _stream_body(feed, items, fmt, rate, started), media_type=MEDIA_TYPES[fmt], headers=headers
        )
    try:
        parts = await cancel_on_disconnect(request, _gather(feed, items))
    except ClientDisconnected:
        feed.cancel()
        CANCELLED.labels("speech").inc()
        REQUESTS.labels("speech", "client_gone").inc()
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    except asyncio.CancelledError:  # the server is shutting down
        feed.cancel()
        CANCELLED.labels("speech").inc()
        raise
    audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    _observe(started, audio.size, time.perf_counter())
    return Response(encode_whole(audio, fmt, rate), media_type=MEDIA_TYPES[fmt], headers=headers)


async def _gather(feed: SegmentFeed[SegmentJob], items: list[FeedItem]) -> list[np.ndarray]:
    return [await feed.result(item) for item in items if item.spoken]


def _observe(started: float, samples: int, first_audio: float | None) -> None:
    elapsed = time.perf_counter() - started
    LATENCY.observe(elapsed)
    if first_audio is not None:
        TTFA.labels("speech").observe(first_audio - started)
    seconds = samples / SAMPLE_RATE_HZ
    AUDIO.observe(seconds)
    if seconds > 0:
        RTF.observe(elapsed / seconds)
    REQUESTS.labels("speech", "ok").inc()


async def _stream_body(
    feed: SegmentFeed[SegmentJob], items: list[FeedItem], fmt: AudioFormat, rate: int, started: float
) -> AsyncIterator[bytes]:
    """Yield each segment's encoded audio in order as soon as it is ready.

    If the client goes away, Starlette cancels this generator; the ``finally`` then drops every
    segment not yet synthesised.
    """
    first: float | None = None
    samples = 0
    finished = False
    try:
        if fmt is AudioFormat.wav:
            yield streaming_wav_header(rate)
        for item in items:
            if not item.spoken:
                continue
            audio = await feed.result(item)
            samples += audio.size
            if audio.size:
                if first is None:
                    first = time.perf_counter()
                yield encode_chunk(audio, fmt, rate)
        finished = True
        _observe(started, samples, first)
    finally:
        if not finished:
            feed.cancel()
            CANCELLED.labels("speech").inc()
