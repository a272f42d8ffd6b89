"""The streaming TTS client (gateway.upstream.tts_stream) against the real TTS service process
(Kokoro on CPU): segments tagged with their text in whole μ-law frames, cancel then a clean next
reply on the same connection, a refused voice, nothing listening, a failing text source."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

from gateway.conversation.deps import SpokenSegment
from gateway.conversation.transport import AudioFormat
from gateway.upstream.tts_stream import TTSStream, TTSStreamClient
from shared.audio import ulaw_decode
from shared.errors import UpstreamError
from tools.stack import Ports, Stack, free_port

PCMU = AudioFormat("pcmu", 8000)
FRAME = PCMU.frame_bytes  # 160


@pytest.fixture(scope="module")
def tts_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a TTS service process (``python -m services.tts``)."""
    logs: Path = tmp_path_factory.mktemp("tts-stream-logs")
    stack = Stack(Ports.free(), reuse=False, log_dir=logs, only={"tts"})
    try:
        stack.start(timeout_s=240)
    except RuntimeError as exc:
        pytest.fail(f"the TTS service did not start: {exc}")
    yield f"http://127.0.0.1:{stack.ports.tts}"
    stack.stop()


async def deltas(*parts: str, delay_s: float = 0.0) -> AsyncIterator[str]:
    """Text deltas as an LLM would stream them."""
    for part in parts:
        await asyncio.sleep(delay_s)
        yield part


async def collect(stream: TTSStream, text: AsyncIterator[str]) -> list[SpokenSegment]:
    return [seg async for seg in stream.speak(text)]


def assert_speech(seg: SpokenSegment) -> None:
    assert seg.audio and len(seg.audio) % FRAME == 0, len(seg.audio)
    pcm = ulaw_decode(seg.audio).astype(np.float64)
    assert np.sqrt(np.mean(pcm**2)) > 300, "a segment of silence"


async def test_deltas_of_two_sentences_give_two_tagged_segments(tts_url: str) -> None:
    stream = await TTSStreamClient(tts_url, timeout_s=60).open("af_heart", PCMU)
    try:
        assert stream.ready["format"] == "mulaw" and stream.ready["sample_rate"] == 8000
        segs = await collect(stream, deltas("Hel", "lo there", ". Your app", "ointment is on Mon", "day."))
    finally:
        await stream.aclose()
    assert [s.text for s in segs] == ["Hello there.", "Your appointment is on Monday."]
    for seg in segs:
        assert_speech(seg)
    # the longer sentence is longer speech (~0.1 s a character either way)
    assert len(segs[1].audio) > len(segs[0].audio)
    await stream.aclose()  # idempotent


async def test_cancel_mid_reply_then_the_next_reply_is_clean_on_the_same_connection(tts_url: str) -> None:
    stream = await TTSStreamClient(tts_url, timeout_s=60).open("af_heart", PCMU)
    try:
        first: list[SpokenSegment] = []
        got_one = asyncio.Event()

        async def barge_in_victim() -> None:
            async for seg in stream.speak(
                deltas("The first thing to know is this. ", "Then comes a second sentence. ", "And a third one.")
            ):
                first.append(seg)
                got_one.set()
                await asyncio.sleep(30)  # "playing" it when the caller barges in

        reply = asyncio.create_task(barge_in_victim())
        await asyncio.wait_for(got_one.wait(), 60)
        reply.cancel()  # barge-in: the task consuming the reply is cancelled
        started = asyncio.get_running_loop().time()
        with contextlib.suppress(asyncio.CancelledError):
            await reply
        assert asyncio.get_running_loop().time() - started < 2.5, "cancel must not wait for synthesis"
        # the first segment of a turn ends after four words (TTS_FIRST_PHRASE_WORDS, services/tts/segmenter.py)
        assert [s.text for s in first] == ["The first thing to know"]

        async with contextlib.aclosing(stream.speak(deltas("Second reply, closed early. It goes on."))) as segs:
            async for _ in segs:  # the consumer stops at the first segment (generator closed)
                break

        segs = await collect(stream, deltas("Goodbye now."))
        assert [s.text for s in segs] == ["Goodbye now."]
        assert_speech(segs[0])
        assert stream.connects == 1, "cancel must leave the connection usable"
    finally:
        await stream.aclose()


async def test_a_failing_text_source_cancels_synthesis_and_propagates(tts_url: str) -> None:
    stream = await TTSStreamClient(tts_url, timeout_s=60).open("af_heart", PCMU)

    async def llm_then_outage() -> AsyncIterator[str]:
        yield "Let me check that for you. "
        yield "One moment"
        await asyncio.sleep(0.05)
        raise UpstreamError("llm", "stream ended without a finish reason", retryable=True)

    try:
        with pytest.raises(UpstreamError) as info:
            await collect(stream, llm_then_outage())
        assert info.value.service == "llm"
        # nothing of the failed reply leaks into the next one
        segs = await collect(stream, deltas("Sorry about that."))
        assert [s.text for s in segs] == ["Sorry about that."]
    finally:
        await stream.aclose()


async def test_unknown_voice_is_refused_not_retryable(tts_url: str) -> None:
    with pytest.raises(UpstreamError) as info:
        await TTSStreamClient(tts_url, timeout_s=30).open("xx_nobody", PCMU)
    assert info.value.service == "tts" and not info.value.retryable
    assert "xx_nobody" in str(info.value) and "af_heart" in str(info.value)  # the server's list of voices


async def test_nothing_listening_is_retryable() -> None:
    with pytest.raises(UpstreamError) as info:
        await TTSStreamClient(f"http://127.0.0.1:{free_port()}", timeout_s=5).open("af_heart", PCMU)
    assert info.value.service == "tts" and info.value.retryable
