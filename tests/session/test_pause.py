"""Pause at the onset of caller speech over the agent; interrupt, or resume where it stopped.

The agent's audio is held as soon as the caller has spoken ``barge_in_pause_ms`` over it; a
backchannel, a noise burst or a pause nobody decides in time resumes the same reply from the frame
where it stopped (nothing lost, nothing repeated); words interrupt it at the caller's first pause."""

from __future__ import annotations

from gateway.conversation.listening import FALSE_ONSET_SILENCE_MS
from tests.fakes import FakeLLM, FakeSTT, FakeTTS, HangUp, Say, Until, run_call
from tests.fakes.session import CallResult
from tests.session.support import LONG_REPLY, LONG_SENTENCES, PROBLEM, first_sentence_heard, greeted

VAD_WINDOW_S = 0.032
FRAME_S = 0.02


def script(said: str, ms: int) -> list:
    return [
        greeted(),
        Say(PROBLEM, 1500),
        first_sentence_heard(),
        Say(said, ms),
        Until(lambda t: bool(t.log.finished("reply")), "an answer played to its end"),
        HangUp(),
    ]


def frames_of(call: CallResult, reply_id: str) -> list[float]:
    return [at for at, r in call.log.frames_out if r == reply_id]


def assert_heard_whole(call: CallResult, tts: FakeTTS) -> str:
    """The reply was heard to its end, every frame once: the pause lost and repeated nothing."""
    (reply,) = call.agent_turns("reply")
    assert reply["text"] == LONG_REPLY and reply["status"] == "completed" and not reply["interrupted"]
    expected = sum(tts.audio_ms(s) for s in LONG_SENTENCES) // 20
    assert len(frames_of(call, reply["reply_id"])) == expected
    return str(reply["reply_id"])


async def test_a_backchannel_pauses_the_agent_which_then_goes_on_where_it_stopped() -> None:
    tts = FakeTTS()
    call = await run_call(script("Uh-huh.", 400), llm=FakeLLM([LONG_REPLY]), tts=tts)
    spoke = call.log.spoken[1]
    (pause,), (resume,) = call.log.pauses, call.log.resumes
    pause_s = call.settings.listening.barge_in_pause_ms / 1000
    assert spoke.start + pause_s - VAD_WINDOW_S <= pause <= spoke.start + pause_s + VAD_WINDOW_S + FRAME_S
    # Resumed once the caller paused (early_stt_ms) and the words were transcribed: a backchannel.
    early_s = call.settings.listening.early_stt_ms / 1000
    assert spoke.end + early_s <= resume <= spoke.end + early_s + VAD_WINDOW_S + FRAME_S + call.stt.latency_s + 0.001
    assert call.log.clears == []
    reply_id = assert_heard_whole(call, tts)
    played = frames_of(call, reply_id)
    assert not [at for at in played if pause + FRAME_S <= at < resume]  # silent while held
    (ack,) = [t for t in call.user_turns() if t.get("backchannel")]
    assert ack["text"] == "Uh-huh."
    assert [r.user_text for r in call.llm.requests] == [PROBLEM]


async def test_a_burst_too_short_to_be_speech_resumes_without_a_transcription() -> None:
    tts = FakeTTS()
    call = await run_call(script("(a cough)", 160), llm=FakeLLM([LONG_REPLY]), tts=tts)
    burst = call.log.spoken[1]
    assert burst.end - burst.start < call.settings.listening.min_speech_ms / 1000
    (pause,), (resume,) = call.log.pauses, call.log.resumes
    assert burst.start <= pause < burst.end + VAD_WINDOW_S
    assert burst.end < resume <= burst.end + FALSE_ONSET_SILENCE_MS / 1000 + 2 * VAD_WINDOW_S + FRAME_S
    assert all("(a cough)" not in (c.text or "") for c in call.stt.calls)
    assert call.log.clears == []
    assert_heard_whole(call, tts)


async def test_a_pause_left_undecided_resumes_after_the_false_interruption_timeout() -> None:
    tts = FakeTTS()
    slow = FakeSTT(latency_s=5.0)  # the backchannel's words take longer than the timeout
    call = await run_call(script("Uh-huh.", 400), llm=FakeLLM([LONG_REPLY]), stt=slow, tts=tts)
    (pause,), (resume,) = call.log.pauses, call.log.resumes
    timeout_s = call.settings.listening.false_interruption_timeout_ms / 1000
    assert abs(resume - pause - timeout_s) <= FRAME_S
    assert call.log.clears == []
    assert_heard_whole(call, tts)


async def test_words_over_the_held_agent_interrupt_it_at_the_callers_first_pause() -> None:
    said = "Wait, one question please."
    llm = FakeLLM([LONG_REPLY, "Sure, what is it?"])
    call = await run_call(script(said, 700), llm=llm)
    spoke = call.log.spoken[1]
    (pause,) = call.log.pauses
    (clear,) = call.log.clears
    assert call.log.resumes == []
    early_s = call.settings.listening.early_stt_ms / 1000
    assert pause < spoke.end  # silent while the caller still talks
    assert spoke.end + early_s <= clear.at <= spoke.end + early_s + VAD_WINDOW_S + FRAME_S + call.stt.latency_s + 0.001
    (stored,) = [t for t in call.turns if t.get("interrupted")]
    assert not [at for at in frames_of(call, stored["reply_id"]) if at > pause]
    assert [r.user_text for r in llm.requests] == [PROBLEM, said]


async def test_without_the_pause_the_agent_talks_until_the_barge_in_rule() -> None:
    llm = FakeLLM([LONG_REPLY, "Of course."])
    interruption = "Wait, stop, I have a question about the price."
    script_ = [
        greeted(),
        Say(PROBLEM, 1500),
        first_sentence_heard(),
        Say(interruption, 1600),
        Until(lambda t: len(llm.requests) >= 2 and bool(t.log.finished("reply")), "the answer"),
        HangUp(),
    ]
    call = await run_call(script_, llm=llm, barge_in_pause_ms=0, barge_in_min_ms=800)
    spoke = call.log.spoken[1]
    (clear,) = call.log.clears
    assert call.log.pauses == [] and call.log.resumes == []
    assert spoke.start + 0.8 - VAD_WINDOW_S <= clear.at <= spoke.start + 0.8 + VAD_WINDOW_S + FRAME_S
    assert clear.cut_reply is not None and clear.cut_reply.startswith("reply-")  # it was still talking
