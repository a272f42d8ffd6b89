"""Async HTTP clients for the STT and TTS services; errors become :class:`UpstreamError`.

The call's streamed synthesis (the TTS WebSocket) is in :mod:`gateway.upstream.tts_stream`;
:class:`TTSClient` here serves whole texts (the admin pipeline).
"""

from __future__ import annotations

import httpx
import numpy as np

from gateway.conversation.deps import Heard
from shared.errors import UpstreamError


async def _post(
    client: httpx.AsyncClient, service: str, url: str, timeout_s: float, **kwargs: object
) -> httpx.Response:
    try:
        resp = await client.post(url, timeout=timeout_s, **kwargs)  # type: ignore[arg-type]
    except httpx.TimeoutException as exc:
        raise UpstreamError(service, f"timed out after {timeout_s}s", retryable=True) from exc
    except httpx.HTTPError as exc:
        raise UpstreamError(service, f"unreachable: {exc!r}", retryable=True) from exc
    if resp.status_code >= 400:
        raise UpstreamError.from_status(service, resp.status_code, resp.text)
    return resp


class STTClient:
    """Client of the STT service's hot path, ``POST /v1/audio/transcriptions/raw``: the body is raw
    PCM16 LE mono, the rate and language are query parameters (no WAV, no multipart); see
    :func:`services.stt.routes.transcriptions_raw`. Satisfies :class:`gateway.conversation.deps.SpeechToText`.

    Args:
        client: shared ``httpx.AsyncClient``.
        base_url: e.g. ``http://127.0.0.1:8001``.
        timeout_s: per-request timeout, seconds.
    """

    def __init__(self, client: httpx.AsyncClient, base_url: str, timeout_s: float = 10.0) -> None:
        self.client = client
        self.url = base_url.rstrip("/") + "/v1/audio/transcriptions/raw"
        self.timeout_s = timeout_s

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
        resp = await _post(self.client, "stt", self.url, self.timeout_s, params=params, content=body, headers=headers)
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
