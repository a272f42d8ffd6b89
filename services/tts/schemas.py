"""Wire schemas of the TTS service (OpenAI ``/v1/audio/speech`` plus service endpoints)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from services.tts.codecs import AudioFormat

__all__ = ["AudioFormat", "Health", "Ready", "SpeechRequest", "VoiceInfo", "VoicesResponse"]

SampleRate = Literal[8000, 16000, 24000]


class SpeechRequest(BaseModel):
    """``POST /v1/audio/speech`` body, as the OpenAI API defines it, plus ``sample_rate``.

    Unknown fields (``instructions``, ``stream_format``…) are accepted and ignored.
    """

    model: str = "kokoro"
    input: str
    voice: str | None = None
    """A Kokoro voice (``GET /v1/audio/voices``) or an OpenAI name (``alloy``, ``nova``…)."""
    response_format: AudioFormat = AudioFormat.wav
    speed: float = Field(1.0, ge=0.5, le=2.0)
    """Kokoro's range is 0.5–2.0 (OpenAI allows 0.25–4.0; outside Kokoro's range → 400)."""
    sample_rate: SampleRate | None = None
    """Output rate in Hz: default 24000, except ``mulaw`` whose default is 8000 (Twilio)."""


class Health(BaseModel):
    """``GET /health``: the process is up and the model loaded."""

    status: str
    voices: int
    sample_rate: int
    backend: str
    device: str


class Ready(BaseModel):
    """``GET /ready``: whether new work is accepted now (503 when the queue is full)."""

    status: Literal["ready", "busy"]
    queue_depth: int
    max_queue: int
    inflight: int


class VoiceInfo(BaseModel):
    """One voice of ``GET /v1/audio/voices``; ``language`` from Kokoro's name prefix (a=US, b=UK…)."""

    id: str
    language: str
    gender: Literal["female", "male", "unknown"]


class VoicesResponse(BaseModel):
    """``GET /v1/audio/voices``: every voice plus the default and the OpenAI-name aliases."""

    default: str
    voices: list[VoiceInfo]
    aliases: dict[str, str]
