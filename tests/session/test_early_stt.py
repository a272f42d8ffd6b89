"""Early transcription: STT starts when the caller pauses, while the end of turn is being decided;
the reply uses that transcript when the turn ends on the same audio (gateway/conversation/early_stt.py)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.fakes import FakeLLM, FakeSTT, FakeTurnDetector, HangUp, Pause, Say, Step, run_call
from tests.session.support import PROBLEM, finished, greeted

FIRST, SECOND = "The leak is under the kitchen sink and", "it is getting worse."


class CancelCountingSTT(FakeSTT):
    """A :class:`FakeSTT` that also counts the transcriptions cancelled before they answered."""

    def __init__(self, latency_s: float) -> None:
        super().__init__(latency_s=latency_s)
        self.cancelled = 0

    async def transcribe(self, pcm16: np.ndarray, sample_rate: int, language: str | None = None) -> str:
        try:
            return await super().transcribe(pcm16, sample_rate, language)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


async def test_one_utterance_is_transcribed_once_during_the_pause_and_the_wait_is_recorded() -> None:
    stt = FakeSTT(latency_s=0.25)
    script: list[Step] = [greeted(), Say(PROBLEM, 1500), finished("reply"), HangUp()]
    call = await run_call(script, llm=FakeLLM(["Sure. What is your address?"]), stt=stt, endpoint_silence_ms=500)

    (request,) = call.llm.requests
    assert request.user_text == PROBLEM
    (only,) = stt.calls  # the early transcription, used: no second one
    spoke_end = call.log.spoken[0].end
    t0 = call.transport.t0
    assert t0 is not None
    early_s = call.settings.listening.early_stt_ms / 1000
    assert early_s - 0.01 <= only.at - t0 - spoke_end <= early_s + 2 * 0.032  # sent after early_stt_ms of silence
    (reply,) = call.agent_turns("reply")
    lat = reply["latency_ms"]
    # STT (250 ms) ran inside the 500 ms endpointing silence: the caller waited nothing for it.
    assert lat["stt_ms"] == pytest.approx(0, abs=1)
    assert lat["stt_total_ms"] == pytest.approx(250, abs=1)


async def test_with_smart_turn_the_transcription_runs_beside_the_turn_check() -> None:
    stt = FakeSTT(latency_s=0.25)
    script: list[Step] = [greeted(), Say(PROBLEM, 1500), finished("reply"), HangUp()]
    call = await run_call(script, llm=FakeLLM(["Sure."]), stt=stt, turn_detector=FakeTurnDetector())
    assert len(stt.calls) == 1
    assert [r.user_text for r in call.llm.requests] == [PROBLEM]
    (reply,) = call.agent_turns("reply")
    assert reply["latency_ms"]["stt_ms"] <= 250 + 1 and reply["latency_ms"]["stt_total_ms"] == pytest.approx(250, abs=1)


async def test_the_caller_going_on_drops_the_early_transcript_and_the_whole_utterance_is_transcribed() -> None:
    stt = CancelCountingSTT(latency_s=0.25)  # still running when the caller resumes after 300 ms
    script: list[Step] = [greeted(), Say(FIRST, 1800), Pause(300), Say(SECOND, 1200), finished("reply"), HangUp()]
    call = await run_call(script, llm=FakeLLM(["I see. When can a plumber come?"]), stt=stt, endpoint_silence_ms=500)

    assert [c.text for c in stt.calls] == [FIRST, f"{FIRST} {SECOND}"]
    assert stt.cancelled == 1  # the early one, when the caller spoke again
    assert stt.calls[1].audio_ms > stt.calls[0].audio_ms + 1200
    assert [r.user_text for r in call.llm.requests] == [f"{FIRST} {SECOND}"]
    assert [t["text"] for t in call.user_turns()] == [f"{FIRST} {SECOND}"]


async def test_a_failed_early_transcription_falls_back_to_a_normal_one_and_the_call_replies() -> None:
    stt = FakeSTT(latency_s=0.25, fail_calls=[0])  # the early request fails
    script: list[Step] = [greeted(), Say(PROBLEM, 1500), finished("reply"), HangUp()]
    call = await run_call(script, llm=FakeLLM(["Sure. What is your address?"]), stt=stt, endpoint_silence_ms=500)

    assert [c.text for c in stt.calls] == [None, PROBLEM]
    assert stt.calls[0].audio_ms == stt.calls[1].audio_ms  # the same audio, sent again
    assert call.kinds() == ["greeting", "reply"]  # no apology
    assert [r.user_text for r in call.llm.requests] == [PROBLEM]
    (reply,) = call.agent_turns("reply")
    assert reply["latency_ms"]["stt_ms"] == pytest.approx(250, abs=1)  # the wait for the second request


async def test_off_transcribes_only_at_the_endpoint_decision() -> None:
    stt = FakeSTT(latency_s=0.25)
    script: list[Step] = [greeted(), Say(FIRST, 1800), Pause(300), Say(SECOND, 1200), finished("reply"), HangUp()]
    await run_call(script, llm=FakeLLM(["I see."]), stt=stt, endpoint_silence_ms=500, early_stt=False)
    assert [c.text for c in stt.calls] == [f"{FIRST} {SECOND}"]


def test_the_pause_audio_is_exactly_what_the_turn_ends_with() -> None:
    """The endpointer's :class:`PauseStarted` carries commit's audio (trailing silence included), so
    the early transcript is the normal path's; speech in the pause makes it stale."""
    from gateway.conversation.endpointing import Endpointer, PauseStarted, SpeechEnded, SpeechResumed

    rng = np.random.default_rng(0)
    frames = [rng.integers(-3000, 3000, 512).astype(np.int16) for _ in range(60)]
    probs = [0.0] * 5 + [1.0] * 20 + [0.0] * 5 + [1.0] * 10 + [0.0] * 20
    ep = Endpointer(silence_ms=500, early_ms=100)
    events = [ev for frame, p in zip(frames, probs, strict=True) for ev in ep.push(frame, p)]
    kinds = [type(ev).__name__ for ev in events]
    assert kinds == ["SpeechStarted", "PauseStarted", "SpeechResumed", "PauseStarted", "SpeechEnded"]
    first, last = (ev for ev in events if isinstance(ev, PauseStarted))
    (ended,) = (ev for ev in events if isinstance(ev, SpeechEnded))
    assert isinstance(events[2], SpeechResumed) and events[2].pause_id == first.pause_id
    assert np.array_equal(last.audio, ended.audio) and not np.array_equal(first.audio, ended.audio)
