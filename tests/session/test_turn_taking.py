"""Turn-taking without barge-in: backchannels, pauses inside a turn, DTMF and typed text.
(With real models: tests/component/test_conversation.py.)"""

from __future__ import annotations

import pytest

from tests.fakes import FakeLLM, FakeTurnDetector, HangUp, Pause, Press, Say, Type, Until, run_call
from tests.session.support import LONG_REPLY, PROBLEM, finished, first_sentence_heard, greeted

BACKCHANNEL_CASES = [("Uh-huh.", 400, False), ("Okay.", 400, False), ("Wait, one question please.", 600, True)]


@pytest.mark.parametrize(("said", "ms", "interrupts"), BACKCHANNEL_CASES)
async def test_a_backchannel_does_not_interrupt_but_words_do(said: str, ms: int, interrupts: bool) -> None:
    llm = FakeLLM([LONG_REPLY, "Sure, what is it?"])
    script = [
        greeted(),
        Say(PROBLEM, 1500),
        first_sentence_heard(),
        Say(said, ms),  # shorter than barge_in_min_ms: judged by its words
        Until(lambda t: bool(t.log.finished("reply")), "an answer played to its end"),
        HangUp(),
    ]
    call = await run_call(script, llm=llm)
    assert ms < call.settings.listening.barge_in_min_ms
    if interrupts:
        assert len(call.log.clears) == 1
        assert [r.user_text for r in llm.requests] == [PROBLEM, said]
        assert any(t.get("interrupted") for t in call.agent_turns("reply"))
        return
    assert call.log.clears == []
    assert len(llm.requests) == 1
    (ack,) = [t for t in call.user_turns() if t.get("backchannel")]
    assert ack["text"] == said
    (reply,) = call.agent_turns("reply")
    assert reply["text"] == LONG_REPLY and not reply["interrupted"] and reply["status"] == "completed"


FIRST, SECOND = "The leak is under the kitchen sink and", "it is getting worse."


async def test_a_pause_shorter_than_the_endpointing_silence_keeps_one_turn() -> None:
    script = [greeted(), Say(FIRST, 1800), Pause(300), Say(SECOND, 1200), finished("reply"), HangUp()]
    call = await run_call(script, llm=FakeLLM(["I see. When can a plumber come?"]), endpoint_silence_ms=500)
    assert [r.user_text for r in call.llm.requests] == [f"{FIRST} {SECOND}"]
    assert [t["text"] for t in call.user_turns()] == [f"{FIRST} {SECOND}"]
    # One utterance, transcribed as one (the early transcript of the first part was dropped when the caller went on).
    assert [c.text for c in call.stt.calls] == [FIRST, f"{FIRST} {SECOND}"]


async def test_a_pause_longer_than_the_endpointing_silence_ends_the_turn() -> None:
    """The contrast: the same words with a pause past the silence end the turn, and the caller
    going on talking before any answer is heard carries the first part into the next request."""
    script = [greeted(), Say(FIRST, 1800), Pause(700), Say(SECOND, 1200), finished("reply"), HangUp()]
    slow = FakeLLM(["I see. When can a plumber come?"] * 2, ttft_s=1.0)  # no answer heard before the caller goes on
    call = await run_call(script, llm=slow, endpoint_silence_ms=500)
    asked = [r.user_text for r in call.llm.requests]
    assert asked[0] == FIRST and asked[-1] == f"{FIRST} {SECOND}", asked
    assert [t["text"] for t in call.user_turns()] == [f"{FIRST} {SECOND}"]


async def test_smart_turn_waits_through_a_mid_sentence_pause_and_answers_a_finished_one_fast() -> None:
    detector = FakeTurnDetector()  # done only after an utterance that ends like a sentence
    script = [greeted(), Say(FIRST, 1800), Pause(700), Say(SECOND, 1200), finished("reply"), HangUp()]
    call = await run_call(
        script,
        llm=FakeLLM(["I see. When can a plumber come?"]),
        turn_detector=detector,
        smart_turn_pause_ms=200,
        smart_turn_max_silence_ms=1500,
    )
    assert [r.user_text for r in call.llm.requests] == [f"{FIRST} {SECOND}"]
    assert (FIRST, detector.incomplete) in detector.calls and (SECOND, detector.complete) in detector.calls
    # The finished turn is not held for the 1.5 s upper bound: pause check + STT + one VAD window or two.
    t0 = call.transport.t0
    assert t0 is not None
    waited = call.llm.requests[0].at - t0 - call.log.spoken[1].end
    assert waited <= 0.2 + call.stt.latency_s + 2 * 0.032 + 0.02, waited


async def test_a_keypad_digit_is_answered_like_an_utterance() -> None:
    script = [greeted(), Press("1"), finished("reply"), HangUp()]
    call = await run_call(script, llm=FakeLLM(["Thanks, you pressed one."]))
    (request,) = call.llm.requests
    assert "pressed 1" in request.user_text
    assert call.log.finished("reply") and call.stt.calls == []


async def test_typed_text_is_answered_like_an_utterance() -> None:
    script = [greeted(), Type("What are your opening hours?"), finished("reply"), HangUp()]
    call = await run_call(script, llm=FakeLLM(["We open at eight."]))
    assert [r.user_text for r in call.llm.requests] == ["What are your opening hours?"]
    assert [t["text"] for t in call.user_turns()] == ["What are your opening hours?"]


async def test_a_speaker_label_the_llm_writes_is_neither_spoken_nor_kept() -> None:
    """Small models copy the prompt's example format (``Sam: …``): the label is cut before TTS."""
    llm = FakeLLM(["Sam: Sure. What is your address?", "Thanks."])
    script = [greeted(), Say(PROBLEM, 1500), finished("reply"), Say("It is 12 Main Street.", 1500)]
    script += [Until(lambda t: len(llm.requests) >= 2, "the second request"), HangUp()]
    call = await run_call(script, llm=llm)
    spoken = " ".join(s.text for s in call.tts.segments)
    assert "Sure. What is your address?" in spoken and "Sam" not in spoken
    (reply, *_) = call.agent_turns("reply")
    assert reply["text"] == "Sure. What is your address?"
    assert llm.requests[-1].assistant_texts()[-1] == "Sure. What is your address?"
