"""The gateway's STT client (gateway.upstream.speech.STTClient) against the real STT service:
raw PCM16 on the hot path (no WAV, no multipart), errors as typed UpstreamErrors."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from stt_helpers import Server, Utterance, free_port

from gateway.upstream.speech import STTClient
from shared.audio import float_to_pcm16, resample
from shared.errors import UpstreamError
from tests.speech import wer


async def test_transcribes_raw_pcm16(server: Server, arctic: Utterance) -> None:
    raw_before = server.metric("stt_requests_total", {"endpoint": "raw", "outcome": "ok"})
    multipart_before = server.metric("stt_requests_total", {"endpoint": "transcriptions"})
    pcm = float_to_pcm16(resample(arctic.audio, arctic.rate, 16000))  # the gateway sends its VAD rate
    async with httpx.AsyncClient() as http:
        stt = STTClient(http, server.url, timeout_s=60)
        text = await stt.transcribe(pcm, 16000)
        assert await stt.transcribe(np.zeros(0, dtype=np.int16), 16000) == ""
    assert wer(arctic.text, text) <= 0.25, text  # tiny.en hears "Greggs in" for "Gregson" here
    assert server.metric("stt_requests_total", {"endpoint": "raw", "outcome": "ok"}) == raw_before + 1
    assert server.metric("stt_requests_total", {"endpoint": "transcriptions"}) == multipart_before


async def test_errors_are_typed(server: Server, arctic: Utterance) -> None:
    pcm = float_to_pcm16(arctic.audio)
    async with httpx.AsyncClient() as http:
        with pytest.raises(UpstreamError) as refused:
            await STTClient(http, server.url, timeout_s=60).transcribe(pcm, arctic.rate, language="tlh")
        with pytest.raises(UpstreamError) as down:
            await STTClient(http, f"http://127.0.0.1:{free_port()}", timeout_s=5).transcribe(pcm, arctic.rate)
    assert refused.value.status == 400 and not refused.value.retryable and "tlh" in str(refused.value)
    assert down.value.service == "stt" and down.value.retryable and down.value.status is None
