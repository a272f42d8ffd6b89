"""``POST /v1/pipeline``: one audio file through the whole chain, without Twilio (for curl testing).

audio file (any format libsndfile reads) → STT → the agent's keyword corrections → LLM reply with
the agent's prompt → TTS in the agent's voice → JSON with the texts and the reply as base64 WAV::

    curl -s localhost:8080/v1/pipeline -H "Authorization: Bearer $GATEWAY_ADMIN_API_KEY" \\
         -F file=@models/audio/caller_leak.wav -F to=+15550100002 | jq -r .reply_text
"""

from __future__ import annotations

import asyncio
import base64
import time

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from pydantic import BaseModel, Field

from gateway.admin.auth import require_admin
from gateway.agents.profile import AgentProfile
from shared.audio import float_to_pcm16, read_audio, wav_bytes
from shared.errors import UpstreamError

router = APIRouter(tags=["pipeline"])

STT_RATE_HZ = 16000
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
MAX_AUDIO_SECONDS = 120.0


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
    hooks = request.app.state.deps.hooks
    resolve = getattr(hooks, "resolve", None)
    try:
        if resolve is not None:  # the database's agents (no call is recorded)
            profile: AgentProfile = await resolve(to)
        else:
            profile = await hooks.profile_for("pipeline", "", to or "")
    except Exception as exc:
        raise HTTPException(status_code=503, detail=f"agent lookup failed: {exc!r}") from exc
    return profile


@router.post("/v1/pipeline", response_model=PipelineResult, dependencies=[Depends(require_admin)])
async def pipeline(
    request: Request,
    file: UploadFile = File(..., description="Caller audio: WAV, FLAC, OGG… any rate, mono or stereo"),
    to: str | None = Form(None, description="The called number (E.164): its agent answers"),
    voice: str | None = Form(None, max_length=64, description="Override the agent's voice"),
) -> PipelineResult:
    """Transcribe, correct, reply and speak.

    Errors: 413 too large or too long, 422 not audio / no speech, 502 an upstream service failed.
    """
    data = await file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(status_code=413, detail=f"file larger than {MAX_UPLOAD_BYTES} bytes")
    try:
        audio, _ = await asyncio.to_thread(read_audio, data, STT_RATE_HZ)
    except Exception as exc:
        raise HTTPException(status_code=422, detail=f"not a readable audio file: {exc}") from exc
    if audio.size / STT_RATE_HZ > MAX_AUDIO_SECONDS:
        raise HTTPException(status_code=413, detail=f"audio longer than {MAX_AUDIO_SECONDS:.0f} s")
    deps = request.app.state.deps
    profile = await _profile(request, to)
    latency: dict[str, float] = {}
    try:
        t0 = time.monotonic()
        transcript = await deps.stt.transcribe(float_to_pcm16(audio), STT_RATE_HZ)
        latency["stt"] = (time.monotonic() - t0) * 1000
        if not transcript.strip():
            raise HTTPException(status_code=422, detail="no speech recognised in the audio")
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
        pcm, rate = await deps.tts.synthesize(reply, spoken_voice) if reply else (audio[:0], STT_RATE_HZ)
        latency["tts"] = (time.monotonic() - t0) * 1000
    except UpstreamError as exc:
        raise HTTPException(status_code=502, detail=f"{exc.service}: {exc}") from exc
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
