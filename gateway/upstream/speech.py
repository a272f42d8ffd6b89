"""Async HTTP clients for the STT and TTS services; errors become :class:`UpstreamError`.

The call's streamed synthesis (the TTS WebSocket) is in :mod:`gateway.upstream.tts_stream`;
:class:`TTSClient` here serves whole texts (the admin pipeline).
"""

from __future__ import annotations

import logging

import httpx
import numpy as np

from gateway.conversation.deps import Heard
from gateway.metrics import UPSTREAM_RETRIES
from shared.errors import UpstreamError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({500, 502, 503, 504})
"""Answers after which a transcription is sent again: the replica serving it died or is being
replaced (a Ray Serve proxy answers 500/503 then), or the service is momentarily full."""


async def _post(
    client: httpx.AsyncClient, service: str, url: str, timeout_s: float, retries: int = 0, **kwargs: object
) -> httpx.Response:
    """POST, sent again up to ``retries`` times after a dropped connection or a :data:`RETRY_STATUSES`
    answer (never after a timeout: the time is spent). Raises :class:`UpstreamError`."""
    for attempt in range(retries + 1):
        last = attempt == retries
        try:
            resp = await client.post(url, timeout=timeout_s, **kwargs)  # type: ignore[arg-type]
        except httpx.TimeoutException as exc:
            raise UpstreamError(service, f"timed out after {timeout_s}s", retryable=True) from exc
        except httpx.HTTPError as exc:
            if last:
                raise UpstreamError(service, f"unreachable: {exc!r}", retryable=True) from exc
            log.warning("%s: %r; sending the request again", service, exc)
        else:
            if resp.status_code < 400:
                return resp
            if last or resp.status_code not in RETRY_STATUSES:
                raise UpstreamError.from_status(service, resp.status_code, resp.text)
            log.warning("%s: answered %d; sending the request again", service, resp.status_code)
        UPSTREAM_RETRIES.labels(service).inc()
    raise AssertionError("unreachable")


class STTClient:
    """Client of the STT service's hot path, ``POST /v1/audio/transcriptions/raw``: the body is raw
    PCM16 LE mono, the rate and language are query parameters (no WAV, no multipart); see
    :func:`services.stt.routes.transcriptions_raw`. Satisfies :class:`gateway.conversation.deps.SpeechToText`.

    A transcription is idempotent, so one that fails on the way (the connection drops, the answer
    is one of :data:`RETRY_STATUSES`) is sent again, ``retries`` times: behind a load balancer or
    Ray Serve the retry reaches another replica and the caller's turn is not lost. A timeout is
    not retried (the turn's time is spent).

    Args:
        client: shared ``httpx.AsyncClient``.
        base_url: e.g. ``http://127.0.0.1:8001`` (or a Serve route: ``http://serve:8000/stt``).
        timeout_s: per-request timeout, seconds.
        retries: how many times a failed transcription is sent again.
    """

    def __init__(self, client: httpx.AsyncClient, base_url: str, timeout_s: float = 10.0, retries: int = 1) -> None:
        self.client = client
        self.url = base_url.rstrip("/") + "/v1/audio/transcriptions/raw"
        self.timeout_s = timeout_s
        self.retries = retries

    async def transcribe(self, pcm16: np.ndarray, sample_rate: int, language: str | None = "en") -> Heard:
        """Transcribe mono PCM16 (int16, shape (n,)) at ``sample_rate`` Hz; returns the text
        (``""`` for no speech) as :class:`Heard` with the language and Whisper's scores.
        ``language=None``: the service's default (detection on a multilingual model).

        Raises:
            UpstreamError: timeout, connection failure or an error status (400 empty audio or an
                unsupported language, 413 too long: not retryable; 503 queue full: retryable).
        """
        if pcm16.size == 0:
            return Heard("")
        params: dict[str, str | int] = {"sample_rate": int(sample_rate), "encoding": "pcm16"}
        if language:
            params["language"] = language
        body = np.ascontiguousarray(pcm16, dtype="<i2").tobytes()
        headers = {"content-type": "application/octet-stream"}
        resp = await _post(
            self.client, "stt", self.url, self.timeout_s, self.retries, params=params, content=body, headers=headers
        )
        data = resp.json()
        return Heard(
            str(data["text"]).strip(), data.get("language"), data.get("no_speech_prob"), data.get("avg_logprob")
        )


class TTSClient:
    """Client of ``POST /v1/audio/speech`` returning raw PCM16.

    Args:
        client: shared ``httpx.AsyncClient``.
        base_url: e.g. ``http://127.0.0.1:8002``.
        timeout_s: per-request timeout, seconds.
    """

    def __init__(self, client: httpx.AsyncClient, base_url: str, timeout_s: float = 15.0) -> None:
        self.client = client
        self.url = base_url.rstrip("/") + "/v1/audio/speech"
        self.timeout_s = timeout_s

    async def synthesize(self, text: str, voice: str, speed: float = 1.0) -> tuple[np.ndarray, int]:
        """Speak ``text``; returns (PCM16 int16 shape (n,), sample rate Hz — 24000 for Kokoro).

        Raises:
            UpstreamError: timeout, connection failure or an error status.
        """
        body = {"model": "kokoro", "input": text, "voice": voice, "response_format": "pcm", "speed": speed}
        resp = await _post(self.client, "tts", self.url, self.timeout_s, json=body)
        rate = int(resp.headers.get("x-sample-rate", "24000"))
        return np.frombuffer(resp.content, dtype="<i2").astype(np.int16), rate
