"""Wire schemas of the STT service (OpenAI ``/v1/audio/transcriptions`` and service endpoints)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel


class ResponseFormat(StrEnum):
    """Formats ``/v1/audio/transcriptions`` returns."""

    json = "json"
    text = "text"
    verbose_json = "verbose_json"


class Transcription(BaseModel):
    """``response_format=json`` body: ``{"text": "..."}``."""

    text: str


class RawTranscription(Transcription):
    """``POST /v1/audio/transcriptions/raw`` body: the text, and what tells speech from noise.

    ``language``: the language decoded (detected when the request named none). ``no_speech_prob``:
    Whisper's probability that the audio holds no speech (the highest over its windows);
    ``avg_logprob``: the mean token log-probability (the lowest over its windows). Both ``None``
    when nothing was decoded (the audio held no speech by Whisper's own rule)."""

    language: str | None = None
    no_speech_prob: float | None = None
    avg_logprob: float | None = None


class WordOut(BaseModel):
    """One word with its start/end in seconds (``timestamp_granularities[]=word``)."""

    word: str
    start: float
    end: float
    probability: float | None = None


class SegmentOut(BaseModel):
    """One segment of ``verbose_json`` (OpenAI field names; times in seconds)."""

    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class VerboseTranscription(BaseModel):
    """``response_format=verbose_json`` body (OpenAI ``TranscriptionVerbose``)."""

    task: str = "transcribe"
    language: str
    duration: float
    """Input audio duration, s."""
    text: str
    segments: list[SegmentOut]
    words: list[WordOut] | None = None


class Health(BaseModel):
    """``GET /health`` (liveness: the process serves HTTP; ``ready`` tells whether it can transcribe)."""

    status: str
    model: str
    device: str
    ready: bool


class Ready(BaseModel):
    """``GET /ready``: 200 once the model is loaded and warmed up, else 503 with ``detail``."""

    ready: bool
    detail: str | None = None
    load_seconds: float | None = None
    warmup_seconds: float | None = None


class ModelCard(BaseModel):
    """One entry of ``GET /v1/models`` (OpenAI shape)."""

    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "switchboard"


class ModelList(BaseModel):
    """``GET /v1/models`` body."""

    object: str = "list"
    data: list[ModelCard]


class TurnProbability(BaseModel):
    """``POST /v1/turn`` body: Smart Turn's probability (0..1) that the caller has finished their turn."""

    probability: float
