"""What the conversation tells a carrier with a screen (``Transport.emit``): the caller's transcript,
the agent's words token by token, and each turn once recorded, in the order they happen. The
browser carriers turn these into their JSON events (tests/component/test_browser_*.py)."""

from __future__ import annotations

from gateway.conversation.transport import AgentText, CallerTranscript, TurnRecorded
from tests.fakes import FakeLLM, HangUp, Say, Until, run_call
from tests.session.support import LONG_REPLY, PROBLEM, finished, first_sentence_heard, greeted

ANSWER = "Sure. What is your address?"


async def test_a_turn_is_shown_as_it_happens() -> None:
    script = [greeted(), Say(PROBLEM, 1500), finished("reply"), HangUp()]
    call = await run_call(script, llm=FakeLLM([ANSWER]))
    events = [ev for _, ev in call.log.emitted]
    heard = [ev for ev in events if isinstance(ev, CallerTranscript)]
    assert [(h.text, h.is_final) for h in heard] == [(PROBLEM, True)]
    reply_text = [ev for ev in events if isinstance(ev, AgentText) and ev.reply_id == "reply-2"]
    deltas, complete = reply_text[:-1], reply_text[-1]
    assert len(deltas) >= 4 and "".join(d.text for d in deltas).strip() == ANSWER
    assert complete.is_complete and complete.text == ANSWER and not any(d.is_complete for d in deltas)
    turns = [ev.turn for ev in events if isinstance(ev, TurnRecorded)]
    assert [(t["role"], t.get("reply_id")) for t in turns] == [("assistant", "greeting-1"), ("user", None),
                                                              ("assistant", "reply-2")]  # fmt: skip
    assert turns[2]["text"] == ANSWER and not turns[2]["interrupted"] and "voice_to_voice_ms" in turns[2]["latency_ms"]
    # in order: the transcript, then the answer's words, then the answer's recorded turn
    at = {id(ev): i for i, ev in enumerate(events)}
    assert at[id(heard[0])] < at[id(deltas[0])] < at[id(complete)] < at[id(call.log.emitted[-1][1])]
    assert call.log.emitted[-1][1] is next(ev for ev in events if isinstance(ev, TurnRecorded) and ev.turn is turns[2])


async def test_a_barge_in_shows_the_cut_reply_as_interrupted_with_what_was_heard() -> None:
    llm = FakeLLM([LONG_REPLY, "Okay, go ahead."])
    script = [greeted(), Say(PROBLEM, 1500), first_sentence_heard(), Say("Wait, I have another question.", 1500)]
    script += [Until(lambda t: len(llm.requests) >= 2, "the second request"), finished("reply"), HangUp()]
    call = await run_call(script, llm=llm)
    turns = [ev.turn for _, ev in call.log.emitted if isinstance(ev, TurnRecorded) and ev.turn["role"] == "assistant"]
    cut = next(t for t in turns if t["reply_id"] == "reply-2")
    assert cut["interrupted"] and cut["status"] == "interrupted"
    assert cut["text"] and LONG_REPLY.startswith(cut["text"]) and len(cut["text"]) < len(LONG_REPLY)
    heard = [ev.text for _, ev in call.log.emitted if isinstance(ev, CallerTranscript)]
    assert heard == [PROBLEM, "Wait, I have another question."]
