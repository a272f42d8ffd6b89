"""The fakes themselves: the session tests are only as good as the caller, clock and models they stand on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from gateway.conversation.llm_tools import ToolCall
from gateway.conversation.transport import AudioIn, CallerLeft, CallStarted, DigitPressed, MarkPlayed
from gateway.conversation.vad import SAMPLE_RATE_HZ
from shared.audio import Resampler
from shared.errors import UpstreamError
from tests.fakes import FakeLLM, FakeSTT, FakeTransport, FakeTTS, FakeVAD, HangUp, LLMReply, Pause, Press, Say


async def test_the_caller_speaks_in_real_time_and_marks_follow_the_audio_played() -> None:
    loop = asyncio.get_running_loop()
    transport = FakeTransport([Pause(100), Say("Hello there.", 200), Press("5"), HangUp()])
    assert isinstance(await transport.receive(), CallStarted)
    t0 = loop.time()
    output = loop.create_task(transport.run_output())
    transport.play(b"\x55" * 160 * 5, "greeting-1")  # 100 ms of audio, then its mark
    transport.mark("greeting-1:0")
    audio: list[tuple[float, AudioIn]] = []
    marks: list[tuple[float, str]] = []
    while (event := await transport.receive()) is not None:
        if isinstance(event, AudioIn):
            audio.append((loop.time() - t0, event))
        elif isinstance(event, MarkPlayed):
            marks.append((loop.time() - t0, event.name))
        elif isinstance(event, DigitPressed):
            assert event.digit == "5" and len(audio) == 15
        else:
            assert isinstance(event, CallerLeft)
    output.cancel()
    assert [round(at, 3) for at, _ in audio] == [round(0.02 * (i + 1), 3) for i in range(15)]
    assert [a.timestamp_ms for _, a in audio] == [20 * i for i in range(15)]
    assert [int(a.pcm16[0]) for _, a in audio] == [0] * 5 + [1000] * 10 and all(a.pcm16.size == 160 for _, a in audio)
    assert marks == [(pytest.approx(0.1), "greeting-1:0")]  # echoed once its 5 frames had played
    assert [round(at, 3) for at, _ in transport.log.frames_out] == [0.0, 0.02, 0.04, 0.06, 0.08]


async def test_clear_drops_queued_audio_and_marks_and_cuts_the_frame_playing() -> None:
    transport = FakeTransport([Pause(1000)])
    await transport.receive()
    output = asyncio.get_running_loop().create_task(transport.run_output())
    transport.play(b"\x55" * 160 * 50, "reply-2")
    transport.mark("reply-2:0")
    await asyncio.sleep(0.31)
    await transport.clear()
    await asyncio.sleep(0.5)
    output.cancel()
    (cleared,) = transport.log.clears
    assert cleared.at == pytest.approx(0.31) and cleared.cut_reply == "reply-2"
    assert cleared.marks_dropped == ("reply-2:0",) and cleared.frames_dropped == 50 - 16
    assert transport.log.marks_played == [] and len(transport.log.frames_out) == 16
    assert transport.pending == 0


async def test_stt_and_vad_read_the_utterances_through_the_sessions_resampler() -> None:
    transport = FakeTransport([Say("The leak is under the sink and", 600), Pause(300), Say("it is worse.", 400)])
    await transport.receive()
    resampler, vad = Resampler(transport.input_rate_hz, SAMPLE_RATE_HZ), FakeVAD().stream()
    chunks, probs = [], []
    for _ in range(65):
        event = await transport.receive()
        assert isinstance(event, AudioIn)
        pcm = resampler.process(event.pcm16)
        chunks.append(pcm)
        probs += [p for _, p in vad.process(pcm)]
    stt = FakeSTT(latency_s=0.25)
    stt.texts = transport.texts
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    heard = await stt.transcribe(np.concatenate(chunks), SAMPLE_RATE_HZ)
    assert heard == "The leak is under the sink and it is worse."
    assert loop.time() - t0 == pytest.approx(0.25)
    runs = "".join("1" if p == 1.0 else "0" if p == 0.0 else "~" for p in probs)
    assert runs.startswith("1" * 18) and "0" * 8 in runs and "1" * 6 in runs.rsplit("0", 1)[1], runs
    assert await stt.transcribe(np.zeros(8000, dtype=np.int16), SAMPLE_RATE_HZ) == ""
    stt.down = True
    with pytest.raises(UpstreamError) as failed:
        await stt.transcribe(chunks[10], SAMPLE_RATE_HZ)
    assert failed.value.service == "stt" and failed.value.retryable
    await transport.stop_caller()


async def _deltas(*parts: str, delay_s: float = 0.0) -> AsyncIterator[str]:
    for part in parts:
        await asyncio.sleep(delay_s)
        yield part


async def test_tts_speaks_a_segment_per_sentence_and_records_a_cancel() -> None:
    tts = FakeTTS(ms_per_char=50, first_audio_s=0.1)
    stream = await tts.open("af_heart", FakeTransport.output_format)
    segments = [s async for s in stream.speak(_deltas("Sure, I can ", "help. What is ", "your name?"))]
    assert [s.text for s in segments] == ["Sure, I can help.", "What is your name?"]
    assert [len(s.audio) for s in segments] == [160 * round(17 * 50 / 20), 160 * round(18 * 50 / 20)]

    async def consume() -> None:
        async for _ in stream.speak(_deltas("One. ", "Two is long", " and slow.", delay_s=1.0)):
            pass

    task = asyncio.get_running_loop().create_task(consume())
    await asyncio.sleep(2.5)  # "One." yielded, "Two is long" received, the rest not yet
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [c.pending_text for c in tts.cancels] == ["Two is long"]
    assert [s.text for s in tts.segments] == ["Sure, I can help.", "What is your name?", "One."]
    tts.down = True
    with pytest.raises(UpstreamError):
        await tts.open("af_heart", FakeTransport.output_format)


async def test_llm_streams_words_then_tool_calls_and_scripted_outages() -> None:
    llm = FakeLLM(
        [
            LLMReply("Bye now!", (ToolCall("end_call"),)),
            LLMReply("Partial answer here", error=500, fail_after_tokens=1),
        ],
        ttft_s=0.3,
        token_delay_s=0.05,
    )
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    items = [i async for i in llm.stream([{"role": "user", "content": "bye"}])]
    assert items == ["Bye ", "now!", ToolCall("end_call")]
    assert loop.time() - t0 == pytest.approx(0.35)
    got: list[str | ToolCall] = []
    with pytest.raises(UpstreamError) as failed:
        async for item in llm.stream([{"role": "user", "content": "hi"}]):
            got.append(item)
    assert got == ["Partial "] and failed.value.status == 500 and failed.value.service == "llm"
    assert [r.user_text for r in llm.requests] == ["bye", "hi"]
    assert [i async for i in llm.stream([])] == ["Okay. ", "How ", "can ", "I ", "help?"]
