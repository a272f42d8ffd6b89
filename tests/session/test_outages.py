"""Each upstream down: the caller hears an apology (or, with no voice at all, the call still ends
cleanly), the turn is kept and marked unanswered, and the call goes on when the upstream is back.
(With real models: tests/component/test_reliability.py.)"""

from __future__ import annotations

from tests.fakes import Do, FakeLLM, FakeStore, FakeSTT, FakeTTS, HangUp, LLMReply, Pause, Say, run_call
from tests.session.support import PROBLEM, finished, greeted


async def test_stt_down_gives_an_apology_keeps_the_turn_and_the_call_recovers() -> None:
    stt = FakeSTT(down=True)
    script = [
        greeted(),
        Say(PROBLEM, 1500),
        finished("apology"),
        Do(lambda: setattr(stt, "down", False)),
        Say(PROBLEM, 1500),
        finished("reply"),
        HangUp(),
    ]
    call = await run_call(script, stt=stt, llm=FakeLLM(["Thanks. What is your address?"]))
    assert call.kinds()[:3] == ["greeting", "apology", "reply"]
    users = call.user_turns()
    assert users[0]["unanswered"] and users[0]["failed"] == "stt"
    assert not users[1].get("unanswered") and users[1]["text"] == PROBLEM
    assert [r.user_text for r in call.llm.requests] == [PROBLEM]


async def test_llm_down_gives_an_apology_and_the_failed_turn_is_not_glued_to_the_next() -> None:
    llm = FakeLLM([LLMReply(error=500), "Sure. What is your address?"])
    second = "Can somebody come today?"
    script = [
        greeted(),
        Say(PROBLEM, 1500),
        finished("apology"),
        finished("reprompt"),  # silence after a failed answer: the trouble re-prompt
        Say(second, 1500),
        finished("reply"),
        HangUp(),
    ]
    call = await run_call(script, llm=llm, reprompt_after_s=1.5, hangup_after_s=60)
    assert [r.user_text for r in llm.requests] == [PROBLEM, second]
    users = call.user_turns()
    assert users[0]["unanswered"] and users[0]["failed"] == "llm" and users[0]["text"] == PROBLEM
    assert not users[1].get("unanswered")
    said = [t["text"] for t in call.agent_turns()]
    assert call.settings.agent.trouble_reprompt_text in said
    assert call.settings.agent.reprompt_text not in said and call.settings.agent.goodbye_text not in said


async def test_tts_down_the_call_still_ends_cleanly_and_the_turn_is_unanswered() -> None:
    tts = FakeTTS(down=True)  # no greeting, no answer, no apology, no goodbye can be spoken
    call = await run_call([Pause(500), Say(PROBLEM, 1500)], tts=tts, reprompt_after_s=2, hangup_after_s=5)
    assert call.log.frames_out == [] and call.log.marks_played == []
    (user,) = call.user_turns()
    assert user["unanswered"] and user["failed"] == "tts" and user["text"] == PROBLEM
    assert len(call.llm.requests) == 1  # the LLM answered; only the voice failed
    assert call.carrier is not None and len(call.carrier.hang_ups) == 1  # the agent hung up
    assert call.summary.status == "completed"
    sid = call.transport.started.call_id
    assert call.store.calls[sid]["status"] == "completed" and call.store.calls[sid]["state"] == "ended"


async def test_tts_failing_mid_answer_plays_what_was_made_and_the_call_goes_on() -> None:
    tts = FakeTTS(fail_after=2)  # the one-sentence greeting, then the answer's first sentence; then TTS dies
    llm = FakeLLM(["Sure, I can help with that. What is your address?"])
    script = [greeted(), Say(PROBLEM, 1500), finished("reply"), Pause(1000), HangUp()]
    call = await run_call(script, llm=llm, tts=tts, profile={"greeting": "Hello, how can I help?"})
    (reply,) = call.agent_turns("reply")
    assert reply["text"] == "Sure, I can help with that."
    assert not call.user_turns()[0].get("unanswered")  # an answer was heard
    assert call.summary.status == "completed"


async def test_redis_down_the_call_is_served_and_its_record_is_complete() -> None:
    store = FakeStore()
    store.down = True
    call = await run_call(
        [greeted(), Say(PROBLEM, 1500), finished("reply"), HangUp()], store=store, llm=FakeLLM(["Noted."])
    )
    assert [t["role"] for t in call.turns] == ["assistant", "user", "assistant"]
    assert call.turns[1]["text"] == PROBLEM and call.summary.status == "completed"


async def test_smart_turn_service_down_the_turn_ends_at_the_max_silence_bound_and_is_answered() -> None:
    """``GATEWAY_SMART_TURN_BACKEND=stt`` with the STT service unreachable: the real remote detector
    answers 0.0 ("not done") to every check, so the turn ends at ``smart_turn_max_silence_ms``."""
    import httpx

    from gateway.upstream.turn import RemoteTurnDetector

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(unreachable)) as http:
        detector = RemoteTurnDetector(http, "http://stt:8001", timeout_s=0.5)
        script = [greeted(), Say(PROBLEM, 1500), finished("reply"), HangUp()]
        call = await run_call(
            script,
            llm=FakeLLM(["Sorry to hear that. What is your address?"]),
            turn_detector=detector,
            smart_turn_pause_ms=200,
            smart_turn_max_silence_ms=1500,
        )
    assert detector.failures >= 1
    assert [r.user_text for r in call.llm.requests] == [PROBLEM]
    (reply,) = call.agent_turns("reply")
    assert reply["status"] == "completed"
    t0 = call.transport.t0
    assert t0 is not None
    waited = call.llm.requests[0].at - t0 - call.log.spoken[0].end
    assert 1.5 - 2 * 0.032 <= waited <= 1.5 + call.stt.latency_s + 2 * 0.032 + 0.02, waited
