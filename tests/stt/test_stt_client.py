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


async def test_the_scores_tell_a_cough_from_words(server: Server, arctic: Utterance) -> None:
    """Whisper writes "So" for a cough; the scores the raw endpoint returns let the gateway drop it
    (gateway/conversation/hallucinations.py) while the real sentence is kept."""
    from bench.robustness.line import PhoneLine, noise_events
    from gateway.conversation.deps import Heard
    from gateway.conversation.hallucinations import hallucination

    cough = noise_events(6.0, 4)[20000:23200]  # a 250 ms cough, nothing else (8 kHz)
    line = PhoneLine()
    pcm8 = np.concatenate([line.frame(cough[i : i + 160], np.zeros(160, np.int16)) for i in range(0, 3200, 160)])
    speech = float_to_pcm16(resample(arctic.audio, arctic.rate, 16000))
    async with httpx.AsyncClient() as http:
        stt = STTClient(http, server.url, timeout_s=60)
        noise = await stt.transcribe(pcm8, 8000)
        words = await stt.transcribe(speech, 16000)
    assert isinstance(noise, Heard) and isinstance(words, Heard)
    assert words.language == "en" and words.no_speech_prob is not None and words.avg_logprob is not None
    assert hallucination(words, words.no_speech_prob, words.avg_logprob, words.language) is None
    assert noise == "" or hallucination(noise, noise.no_speech_prob, noise.avg_logprob, noise.language) is not None, (
        noise,
        noise.no_speech_prob,
        noise.avg_logprob,
    )
