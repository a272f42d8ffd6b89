"""HTTP glue of the STT service: OpenAI transcriptions, the raw PCM16 hot path, service endpoints.

Errors are OpenAI-shaped (``shared.errors.APIError``): 400 missing/invalid field (an unknown
``format`` or ``response_format``, a ``language`` the model does not know), 413 audio longer than
``STT_MAX_AUDIO_SECONDS`` (found while decoding: decoding stops there), 415 undecodable audio or an
unsupported media type, 503 queue full or model not ready (both with ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from services.stt import metrics
from services.stt.decoding import (
    FORMATS,
    SAMPLE_RATE_HZ,
    AudioDecodeError,
    AudioTooLongError,
    decode_pcm16,
    decode_ulaw,
    decode_upload,
)
from services.stt.engine import DecodeOptions, Result, UnsupportedLanguageError, WhisperEngine
from services.stt.scheduler import SchedulerClosedError
from services.stt.schemas import (
    Health,
    ModelCard,
    ModelList,
    RawTranscription,
    Ready,
    ResponseFormat,
    SegmentOut,
    Transcription,
    VerboseTranscription,
    WordOut,
)
from services.stt.service import STTService
from shared.disconnect import ClientDisconnected, cancel_on_disconnect
from shared.errors import CLIENT_CLOSED_REQUEST, APIError, QueueFullError
from shared.gpu import GPUInfo, gpu_info

router = APIRouter()

BYTES_PER_SECOND_LIMIT = 48000 * 2 * 4
"""Upload guard before decoding: 48 kHz stereo float32 bytes per second of allowed audio."""


def stt_service(app: Any) -> STTService:
    """The app's :class:`STTService` (``app.state.stt``, set by the lifespan)."""
    return app.state.stt


def _too_long(seconds: float, limit: float, param: str) -> APIError:
    return APIError(413, f"audio is {seconds:.1f}s; the limit is {limit:.0f}s", param=param, code="audio_too_long")


def checked_language(engine: WhisperEngine, language: str | None) -> str | None:
    """The request's language as the engine wants it (``None``: the service default).

    Raises:
        APIError: 400 (``param="language"``, ``code="unsupported_language"``) for a code the model
            does not know, e.g. ``klingon``, or anything but ``en`` on an English-only model.
    """
    try:
        return engine.check_language(language)
    except UnsupportedLanguageError as exc:
        raise APIError(400, str(exc), param="language", code="unsupported_language") from exc


async def check_language(service: STTService, language: str | None, endpoint: str) -> str | None:
    """:func:`checked_language` once the model is loaded (waits like :func:`transcribe_audio`).

    Raises:
        APIError: 400 unknown language; 503 model not ready.
    """
    engine, _ = await service.wait_ready(language)
    try:
        return checked_language(engine, language)
    except APIError:
        metrics.REQUESTS.labels(endpoint, "bad_request").inc()
        raise


async def transcribe_audio(
    service: STTService, audio: np.ndarray, options: dict[str, Any], endpoint: str
) -> tuple[Result, DecodeOptions]:
    """Check the length, compute features off the loop, queue for the next batch, await the text.

    Args:
        service: the app's service state.
        audio: float32 mono 16 kHz, shape (n,).
        options: :meth:`WhisperEngine.default_options` overrides (``None`` values → defaults).
        endpoint: label for the request metrics.
    Raises:
        APIError: 400 unknown language, 413 too long, 503 queue full / shutting down / not ready.
    """
    engine, scheduler = await service.wait_ready(options.get("language"))
    options = {**options, "language": checked_language(engine, options.get("language"))}
    seconds = audio.size / SAMPLE_RATE_HZ
    if seconds > service.settings.max_audio_seconds:
        metrics.REQUESTS.labels(endpoint, "too_large").inc()
        raise _too_long(seconds, service.settings.max_audio_seconds, "file")
    opts = engine.default_options(**options)
    started = time.perf_counter()
    item = await engine.prepare_async(audio, opts)
    try:
        result = await scheduler.submit(item)
    except QueueFullError as exc:
        metrics.REQUESTS.labels(endpoint, "queue_full").inc()
        raise APIError(
            503, str(exc), type="server_error", code="queue_full", headers={"Retry-After": str(exc.retry_after_s)}
        ) from exc
    except SchedulerClosedError as exc:
        raise APIError(503, str(exc), type="server_error", code="shutting_down", headers={"Retry-After": "5"}) from exc
    metrics.LATENCY.observe(time.perf_counter() - started)
    metrics.AUDIO.observe(seconds)
    metrics.REQUESTS.labels(endpoint, "ok").inc()
    return result, opts


async def transcribe_watching(
    request: Request, audio: np.ndarray, options: dict[str, Any], endpoint: str
) -> tuple[Result, DecodeOptions] | None:
    """:func:`transcribe_audio`, cancelled (leaving the queue) if the client disconnects first
    (:func:`shared.disconnect.cancel_on_disconnect`).

    Returns ``None`` when the client went away (whatever the cancelled work ended with).
    Raises what :func:`transcribe_audio` raises otherwise.
    """
    try:
        return await cancel_on_disconnect(request, transcribe_audio(stt_service(request.app), audio, options, endpoint))
    except ClientDisconnected:
        metrics.REQUESTS.labels(endpoint, "client_gone").inc()
        return None


def _verbose(result: Result, words: bool) -> VerboseTranscription:
    segs = [SegmentOut(**{k: getattr(s, k) for k in SegmentOut.model_fields}) for s in result.segments]
    word_list = None
    if words:
        word_list = [
            WordOut(word=w.word.strip(), start=w.start, end=w.end, probability=w.probability)
            for s in result.segments
            for w in (s.words or [])
        ]
    return VerboseTranscription(
        language=result.language,
        duration=round(result.audio_seconds, 3),
        text=result.text,
        segments=segs,
        words=word_list,
    )


@router.get("/health", response_model=Health)
async def health(request: Request) -> Health:
    """Liveness: the process answers HTTP (``ready`` says whether the model is loaded)."""
    svc = stt_service(request.app)
    device = svc.engine.device if svc.engine else svc.settings.device
    return Health(status="ok", model=svc.settings.model, device=device, ready=svc.ready.is_set())


@router.get("/ready", response_model=Ready, responses={503: {"model": Ready}})
async def ready(request: Request) -> Ready | JSONResponse:
    """Readiness: 200 once the model is loaded and warmed up, else 503."""
    svc = stt_service(request.app)
    if svc.ready.is_set():
        return Ready(ready=True, load_seconds=svc.load_seconds, warmup_seconds=svc.warmup_seconds)
    body = Ready(ready=False, detail=svc.error or "loading")
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "2"})


@router.get("/v1/models", response_model=ModelList)
async def models(request: Request) -> ModelList:
    """OpenAI model list: the one served id (``STT_MODEL_NAME``)."""
    return ModelList(data=[ModelCard(id=stt_service(request.app).settings.model_name)])


@router.get("/gpu", response_model=GPUInfo)
async def gpu(request: Request) -> GPUInfo:
    """Device, GPU memory used/total (MiB) and utilisation (%); ``device="cpu"`` and nulls on CPU."""
    svc = stt_service(request.app)
    device = svc.engine.device if svc.engine else svc.settings.device
    return await asyncio.to_thread(gpu_info, device, svc.settings.device_index)


@router.post("/v1/audio/transcriptions", response_model=None)
async def transcriptions(
    request: Request,
    file: Annotated[UploadFile | None, File()] = None,
    model: Annotated[str, Form()] = "whisper-1",
    language: Annotated[str | None, Form()] = None,
    prompt: Annotated[str | None, Form()] = None,
    response_format: Annotated[ResponseFormat, Form()] = ResponseFormat.json,
    temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
    timestamp_granularities: Annotated[list[str] | None, Form(alias="timestamp_granularities[]")] = None,
    format: Annotated[str | None, Form()] = None,
    sample_rate: Annotated[int | None, Form(ge=4000, le=192000)] = None,
) -> Response | Transcription | VerboseTranscription:
    """OpenAI-compatible transcription.

    The audio is the multipart ``file`` (wav/flac/mp3/ogg/webm…; a part typed ``audio/basic`` or
    ``format=mulaw`` is raw 8 kHz μ-law, ``format=pcm16`` raw PCM16; ``sample_rate`` in Hz for raw
    parts) or, without multipart, the whole body with an ``audio/*`` Content-Type.
    ``response_format``: ``json`` → ``{"text"}``, ``text`` → plain text, ``verbose_json`` →
    language, duration, segments and (with ``timestamp_granularities[]=word``) words.

    Errors: 400 missing file, unknown ``format`` or ``response_format``, unsupported ``language``;
    413 too long (decoding stops once the audio passes the limit); 415 undecodable;
    503 queue full (``Retry-After``).
    """
    endpoint = "transcriptions"
    if file is not None:
        data, ctype = await file.read(), file.content_type
    elif (request.headers.get("content-type") or "").startswith("audio/"):
        data, ctype = await request.body(), request.headers.get("content-type")
        format = format or request.query_params.get("format")
    else:
        metrics.REQUESTS.labels(endpoint, "bad_request").inc()
        raise APIError(400, "missing the 'file' field (multipart/form-data)", param="file")
    limit = stt_service(request.app).settings.max_audio_seconds
    if len(data) > limit * BYTES_PER_SECOND_LIMIT:
        metrics.REQUESTS.labels(endpoint, "too_large").inc()
        raise APIError(
            413,
            f"upload of {len(data)} bytes exceeds the {limit:.0f}s audio limit",
            param="file",
            code="audio_too_long",
        )
    if not data:
        metrics.REQUESTS.labels(endpoint, "bad_request").inc()
        raise APIError(400, "the 'file' field is empty", param="file")
    if format is not None and format.strip() and format.strip().lower() not in FORMATS:
        metrics.REQUESTS.labels(endpoint, "bad_request").inc()
        raise APIError(
            400,
            f"unknown format {format!r}; use one of {', '.join(sorted(FORMATS))} (or omit it for a file)",
            param="format",
            code="invalid_value",
        )
    language = await check_language(stt_service(request.app), language, endpoint)
    try:
        audio = await asyncio.to_thread(decode_upload, data, ctype, format, sample_rate, limit)
    except AudioTooLongError as exc:
        metrics.REQUESTS.labels(endpoint, "too_large").inc()
        raise APIError(413, str(exc), param="file", code="audio_too_long") from exc
    except AudioDecodeError as exc:
        metrics.REQUESTS.labels(endpoint, "unsupported_media").inc()
        raise APIError(415, str(exc), param="file", code="unsupported_audio") from exc
    verbose = response_format is ResponseFormat.verbose_json
    words = verbose and "word" in (timestamp_granularities or [])
    options = {
        "language": language,
        "prompt": prompt,
        "temperature": temperature,
        "timestamps": verbose or None,
        "word_timestamps": words or None,
    }
    done = await transcribe_watching(request, audio, options, endpoint)
    if done is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    result, _ = done
    if response_format is ResponseFormat.text:
        return PlainTextResponse(result.text + "\n")
    if verbose:
        return _verbose(result, words)
    return Transcription(text=result.text)


@router.post("/v1/audio/transcriptions/raw", response_model=RawTranscription)
async def transcriptions_raw(
    request: Request,
    sample_rate: Annotated[int, Query(ge=4000, le=192000)] = SAMPLE_RATE_HZ,
    language: str | None = None,
    prompt: str | None = None,
    encoding: Annotated[str, Query(pattern="^(pcm16|mulaw)$")] = "pcm16",
) -> Response | RawTranscription:
    """Hot path without multipart: the body is PCM16 little-endian mono (``encoding=pcm16``) or
    G.711 μ-law (``encoding=mulaw``) at ``sample_rate`` Hz; returns ``{"text", "language",
    "no_speech_prob", "avg_logprob"}`` (:class:`RawTranscription`: the scores that tell noise).

    Errors: 400 empty body or unsupported ``language``, 413 too long (checked before decoding),
    415 odd PCM16 byte count.
    """
    endpoint = "raw"
    data = await request.body()
    if not data:
        metrics.REQUESTS.labels(endpoint, "bad_request").inc()
        raise APIError(400, "the request body (PCM16 audio) is empty", param="body")
    seconds = len(data) / (2 if encoding == "pcm16" else 1) / sample_rate
    limit = stt_service(request.app).settings.max_audio_seconds
    if seconds > limit:
        metrics.REQUESTS.labels(endpoint, "too_large").inc()
        raise _too_long(seconds, limit, "body")
    language = await check_language(stt_service(request.app), language, endpoint)
    try:
        if encoding == "pcm16":
            audio = await asyncio.to_thread(decode_pcm16, data, sample_rate)
        else:
            audio = await asyncio.to_thread(decode_ulaw, data, sample_rate)
    except AudioDecodeError as exc:
        metrics.REQUESTS.labels(endpoint, "unsupported_media").inc()
        raise APIError(415, str(exc), param="body", code="unsupported_audio") from exc
    done = await transcribe_watching(request, audio, {"language": language, "prompt": prompt}, endpoint)
    if done is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    result = done[0]
    segs = result.segments
    return RawTranscription(
        text=result.text,
        language=result.language,
        no_speech_prob=max((s.no_speech_prob for s in segs), default=None),
        avg_logprob=min((s.avg_logprob for s in segs), default=None),
    )
