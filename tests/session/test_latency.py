"""Each stage of a reply is timed on the call's clock, and the sum is what the caller waits.
(The same stages with real models: tests/e2e/test_call.py, bench/latency_bench.py.)"""

from __future__ import annotations

import pytest

from tests.fakes import FakeLLM, FakeSTT, FakeTTS, HangUp, Say, Until, run_call
from tests.session.support import LONG_REPLY, PROBLEM, finished, greeted


async def test_each_stage_of_a_reply_is_timed_and_they_add_up_to_what_the_caller_waits() -> None:
    stt, tts = FakeSTT(latency_s=0.25), FakeTTS(first_audio_s=0.3)
    llm = FakeLLM(["Sure. What is your address?"], ttft_s=0.4)
    script = [greeted(), Say(PROBLEM, 1500), finished("reply"), HangUp()]
    # Early STT off: the transcription then starts at the endpoint decision (tests/session/test_early_stt.py).
    call = await run_call(script, llm=llm, stt=stt, tts=tts, endpoint_silence_ms=500, early_stt=False)

    (reply,) = call.agent_turns("reply")
    lat = reply["latency_ms"]
    assert 500 <= lat["endpointing_ms"] <= 500 + 2 * 32  # the silence rule, on 32 ms VAD frames
    assert lat["stt_ms"] == pytest.approx(250, abs=1) and lat["stt_total_ms"] == pytest.approx(250, abs=1)
    assert lat["llm_ttft_ms"] == pytest.approx(400, abs=30)
    assert lat["tts_first_audio_ms"] == pytest.approx(300, abs=60)  # from the first sentence's text

    # The caller's wait: from the end of their speech to the first frame of the answer.
    spoke_end = call.log.spoken[0].end
    first = call.log.first_frame(reply["reply_id"])
    assert first is not None
    heard_wait_ms = (first - spoke_end) * 1000
    assert lat["voice_to_voice_ms"] == pytest.approx(heard_wait_ms, abs=40)
    stages = lat["endpointing_ms"] + lat["stt_ms"] + lat["llm_ttft_ms"] + lat["tts_first_audio_ms"]
    assert stages - 40 <= lat["voice_to_voice_ms"] <= stages + 100


async def test_a_reply_cut_short_by_a_hang_up_keeps_its_voice_to_voice_latency() -> None:
    """The caller's wait is known once the first frame of the answer plays, whatever happens after."""
    tts = FakeTTS(first_audio_s=0.3)
    llm = FakeLLM([LONG_REPLY], ttft_s=0.4, token_delay_s=0.2)  # slow tokens: the reply is still coming
    started = Until(lambda t: any(t.log.first_frame(r) is not None for r in t.log.replies("reply")), "answer starts")
    script = [greeted(), Say(PROBLEM, 1500), started, HangUp()]
    call = await run_call(script, llm=llm, tts=tts, endpoint_silence_ms=500)

    (reply,) = call.agent_turns("reply")
    assert reply["interrupted"]
    first = call.log.first_frame(reply["reply_id"])
    assert first is not None
    assert reply["latency_ms"]["voice_to_voice_ms"] == pytest.approx((first - call.log.spoken[0].end) * 1000, abs=40)
