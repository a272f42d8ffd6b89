"""Barge-in: the caller talks over the agent; the line is cleared at once and the history keeps
only what the caller heard. (The same scenario with real models: tests/component/test_conversation.py.)"""

from __future__ import annotations

from tests.fakes import FakeLLM, FakeTTS, HangUp, LLMReply, Pause, Say, Until, run_call
from tests.session.support import LONG_REPLY, LONG_SENTENCES, PROBLEM, first_sentence_heard, greeted

VAD_WINDOW_S = 0.032
"""One Silero frame (512 samples at 16 kHz): the rule can only fire at the end of one."""
FRAME_S = 0.02
"""One carrier frame: the caller's audio arrives 20 ms at a time."""
EPS_S = 1e-6
"""Float rounding of loop times (9.96 + 0.8 is 10.760000000000002)."""
INTERRUPTION = "Wait, stop, I have a question about the price."


async def test_barge_in_clears_within_a_vad_window_and_keeps_only_the_heard_sentences() -> None:
    llm = FakeLLM([LONG_REPLY, "Of course, what about the price?"])
    script = [
        greeted(),
        Say(PROBLEM, 1500),
        first_sentence_heard(),
        Say(INTERRUPTION, 1600),
        Until(lambda t: len(llm.requests) >= 2 and bool(t.log.finished("reply")), "the answer to the interruption"),
        HangUp(),
    ]
    call = await run_call(script, llm=llm)
    min_s = call.settings.listening.barge_in_min_ms / 1000
    spoke = call.log.spoken[1]  # the interruption

    (pause,) = call.log.pauses
    (clear,) = call.log.clears
    # The agent's audio is held once the caller has spoken barge_in_pause_ms (within one VAD window,
    # plus the carrier frame that carried the audio; a window mostly voiced counts whole, so it may be one
    # window early); the interruption is confirmed, and the line cleared, once they have spoken
    # barge_in_min_ms — measured from the caller's side.
    pause_s = call.settings.listening.barge_in_pause_ms / 1000
    assert spoke.start + pause_s - VAD_WINDOW_S <= pause <= spoke.start + pause_s + VAD_WINDOW_S + FRAME_S, (
        spoke,
        pause,
    )
    assert spoke.start + min_s - EPS_S <= clear.at <= spoke.start + min_s + VAD_WINDOW_S + FRAME_S, (spoke, clear)
    assert call.log.resumes == []
    (stored,) = [t for t in call.turns if t.get("interrupted")]
    interrupted = stored["reply_id"]
    assert interrupted.startswith("reply-") and clear.cut_reply is None  # nothing was playing any more
    # Nothing of it after the pause but the frame then playing.
    assert all(at <= pause for at, reply in call.log.frames_out if reply == interrupted)
    heard_marks = [m for m in call.log.marks_of(interrupted) if not m.endswith(":end")]
    assert 1 <= len(heard_marks) < len(LONG_SENTENCES), heard_marks
    heard = " ".join(LONG_SENTENCES[: len(heard_marks)])

    record = call.turns
    assert stored["status"] == "interrupted"
    assert stored["text"] == heard and stored["full_text"] == LONG_REPLY
    asked = [i for i, t in enumerate(record) if t["role"] == "user" and t["text"] == PROBLEM]
    assert asked and asked[0] < record.index(stored), record  # the turn, then the answer it interrupted
    # Where in the caller's audio the rule fired (stream ms, the conversation's own clock): a VAD
    # window that is mostly speech counts whole, so the rule may fire up to one window early.
    start_ms, min_ms = round(spoke.start * 1000), call.settings.listening.barge_in_min_ms
    assert start_ms + min_ms - 32 <= stored["barge_in_stream_ms"] <= start_ms + min_ms + 2 * 32, stored

    second = call.llm.requests[1]
    assert second.assistant_texts()[-1] == heard  # the unheard sentences never reach the LLM
    assert second.user_text == INTERRUPTION
    assert call.stored_turns == record  # the live store holds the same turns


async def test_barge_in_while_the_answer_is_still_streaming_cancels_llm_and_tts() -> None:
    slow = LLMReply(LONG_REPLY, token_delay_s=0.25)  # ~7 s of tokens: still generating when the caller cuts in
    llm = FakeLLM([slow, "Sure, go ahead."])
    tts = FakeTTS()
    script = [
        greeted(),
        Say(PROBLEM, 1500),
        first_sentence_heard(),
        Say(INTERRUPTION, 1600),
        Until(lambda t: len(llm.requests) >= 2 and bool(t.log.finished("reply")), "the answer to the interruption"),
        HangUp(),
    ]
    call = await run_call(script, llm=llm, tts=tts)

    (clear,) = call.log.clears
    assert llm.cancelled == 1  # the first answer's stream was closed before its end
    assert len(tts.cancels) == 1 and clear.at <= tts.cancels[0].at - call.transport.t0 <= clear.at + 0.001
    # The line may be silent at that instant (the next sentence's tokens are still coming): the
    # interrupted reply is the one the record marks so.
    (stored,) = [t for t in call.turns if t.get("interrupted")]
    interrupted = stored["reply_id"]
    assert clear.cut_reply in (None, interrupted)
    assert not [1 for at, reply in call.log.frames_out if reply == interrupted and at > clear.at]
    spoken = {s.text for s in tts.segments}
    assert LONG_SENTENCES[-1] not in spoken  # synthesis stopped: the last sentence was never made
    assert call.llm.requests[1].user_text == INTERRUPTION


async def test_caller_hanging_up_mid_answer_records_what_was_heard() -> None:
    script = [greeted(), Say(PROBLEM, 1500), first_sentence_heard(), Pause(300), HangUp()]
    call = await run_call(script, llm=FakeLLM([LONG_REPLY]))
    (reply,) = call.agent_turns("reply")
    assert reply["status"] == "hangup" and reply["interrupted"]
    assert reply["text"] == LONG_SENTENCES[0]
    assert call.summary.status == "completed"
    assert call.log.clears == [] and call.carrier is not None and call.carrier.hang_ups == []
