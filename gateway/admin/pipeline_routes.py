"""``POST /v1/pipeline``: one audio file through the whole chain, without Twilio (for curl testing).

audio file (any format libsndfile reads) → STT → the agent's keyword corrections → LLM reply with
the agent's prompt → TTS in the agent's voice → JSON with the texts and the reply as base64 WAV::

    curl -s localhost:8080/v1/pipeline -H "Authorization: Bearer $GATEWAY_ADMIN_API_KEY" \\
         -F file=@models/audio/caller_leak.wav -F to=+15550100002 | jq -r .reply_text

Errors are OpenAI-shaped, like the STT and TTS services' (:class:`shared.errors.APIError`)::

    {"error": {"message": "...", "type": "invalid_request_error", "param": "file", "code": "unsupported_audio"}}
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from gateway.admin.auth import require_admin
from gateway.agents.profile import AgentDirectory, AgentProfile
from shared.audio import float_to_pcm16, read_audio, wav_bytes
from shared.errors import APIError, UpstreamError

STT_RATE_HZ = 16000
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
MAX_AUDIO_SECONDS = 120.0


def _validation_error(exc: RequestValidationError) -> APIError:
    """A 400 naming the first invalid field, as the services answer (``shared.errors``)."""
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "form")]
    param = ".".join(loc) or None
    msg = f"{param}: {first.get('msg', 'invalid request')}" if param else str(first.get("msg", "invalid"))
    return APIError(400, msg, param=param, code="invalid_value")


def _http_error(exc: HTTPException) -> APIError:
    """An ``HTTPException`` (the admin key's 401) as an OpenAI-shaped error, headers kept."""
    code = "invalid_api_key" if exc.status_code == 401 else None
    kind = "server_error" if exc.status_code >= 500 else "invalid_request_error"
    return APIError(exc.status_code, str(exc.detail), type=kind, code=code, headers=dict(exc.headers or {}))


class OpenAIErrorRoute(APIRoute):
    """Answers every error of its routes (handler, dependencies, validation) as ``{"error": {...}}``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except APIError as exc:
                err = exc
            except RequestValidationError as exc:
                err = _validation_error(exc)
            except HTTPException as exc:
                err = _http_error(exc)
            return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

        return handle


router = APIRouter(tags=["pipeline"], route_class=OpenAIErrorRoute)


class PipelineResult(BaseModel):
    """What the chain made of the audio."""

    transcript: str = Field(description="What STT heard")
    corrected_transcript: str = Field(description="After the agent's keyword corrections (what the LLM got)")
    reply_text: str
    reply_audio: str = Field(description="The spoken reply: a base64-encoded 16-bit PCM WAV file")
    reply_audio_format: str = "wav"
    reply_sample_rate: int
    agent: str
    voice: str
    latency_ms: dict[str, float] = Field(description="stt, llm, tts: milliseconds each")


async def _profile(request: Request, to: str | None) -> AgentProfile:
    """The agent answering ``to``, recording no call.

    Raises:
        APIError: 503 when the agents cannot be looked up.
    """
    directory: AgentDirectory = request.app.state.deps.hooks
    try:
        return await directory.resolve(to)
    except Exception as exc:
        raise APIError(503, f"agent lookup failed: {exc!r}", type="server_error", code="agent_lookup_failed") from exc


@router.post("/v1/pipeline", response_model=PipelineResult, dependencies=[Depends(require_admin)])
async def pipeline(
    request: Request,
    file: UploadFile = File(..., description="Caller audio: WAV, FLAC, OGG… any rate, mono or stereo"),
    to: str | None = Form(None, description="The called number (E.164): its agent answers"),
    voice: str | None = Form(None, max_length=64, description="Override the agent's voice"),
) -> PipelineResult:
    """Transcribe, correct, reply and speak.

    Errors (OpenAI-shaped): 400 a missing or invalid field, 401 no or a wrong admin key, 413 too
    large or too long, 415 not audio, 422 no speech, 502 an upstream service failed, 503 the
    agents cannot be looked up.
    """
    data = await file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise APIError(413, f"file larger than {MAX_UPLOAD_BYTES} bytes", param="file", code="file_too_large")
    try:
        audio, _ = await asyncio.to_thread(read_audio, data, STT_RATE_HZ)
    except Exception as exc:
        raise APIError(415, f"not a readable audio file: {exc}", param="file", code="unsupported_audio") from exc
    if audio.size / STT_RATE_HZ > MAX_AUDIO_SECONDS:
        raise APIError(413, f"audio longer than {MAX_AUDIO_SECONDS:.0f} s", param="file", code="audio_too_long")
    deps = request.app.state.deps
    profile = await _profile(request, to)
    latency: dict[str, float] = {}
    try:
        t0 = time.monotonic()
        transcript = await deps.stt.transcribe(float_to_pcm16(audio), STT_RATE_HZ)
        latency["stt"] = (time.monotonic() - t0) * 1000
        if not transcript.strip():
            raise APIError(422, "no speech recognised in the audio", param="file", code="no_speech")
        corrected = profile.corrections.apply(transcript)
        messages = [
            {"role": "system", "content": profile.system_prompt},
            {"role": "assistant", "content": profile.greeting},
            {"role": "user", "content": corrected},
        ]
        t0 = time.monotonic()
        reply = "".join([delta async for delta in deps.llm.stream(messages)]).strip()
        latency["llm"] = (time.monotonic() - t0) * 1000
        spoken_voice = voice or profile.voice
        t0 = time.monotonic()
        pcm, rate = (
            await request.app.state.tts_http.synthesize(reply, spoken_voice) if reply else (audio[:0], STT_RATE_HZ)
        )
        latency["tts"] = (time.monotonic() - t0) * 1000
    except UpstreamError as exc:
        raise APIError(502, str(exc), type="server_error", param=exc.service, code="upstream_error") from exc
    return PipelineResult(
        transcript=transcript,
        corrected_transcript=corrected,
        reply_text=reply,
        reply_audio=base64.b64encode(wav_bytes(pcm, rate)).decode(),
        reply_sample_rate=rate,
        agent=profile.name,
        voice=spoken_voice,
        latency_ms={k: round(v, 1) for k, v in latency.items()},
    )
