"""Function calling on a live call: end_call says goodbye then hangs up through the carrier,
transfer_call dials the profile's number. (With real models: tests/component/test_tools.py.)"""

from __future__ import annotations

from gateway.conversation.llm_tools import ToolCall
from tests.fakes import CallResult, FakeCarrier, FakeLLM, HangUp, LLMReply, Say, run_call
from tests.session.support import finished, greeted

TOOLS = ["end_call", "transfer_call", "take_message", "book_appointment"]
NUMBER = "+15557654321"


def _hang_up_after(call: CallResult, kind: str) -> None:
    """The carrier hung up once, after the ``kind`` reply had played, and the conversation closed the line."""
    assert call.carrier is not None
    ((at, sid),) = call.carrier.hang_ups
    assert sid == call.transport.started.call_id
    (said,) = call.log.finished(kind)
    played = call.log.played(f"{said}:end")
    assert played is not None and at >= played  # the goodbye was heard first
    assert call.log.closed_at is not None and call.log.closed_at >= at
    assert call.summary.status == "completed"


async def test_end_call_plays_the_goodbye_then_hangs_up() -> None:
    llm = FakeLLM([LLMReply("You are welcome, goodbye!", (ToolCall("end_call", {"reason": "done"}),))])
    call = await run_call([greeted(), Say("That's all I needed, thanks, bye.")], llm=llm, tools=TOOLS)
    _hang_up_after(call, "reply")
    assert [a["tool"] for a in call.store.actions[call.transport.started.call_id]] == ["end_call"]
    offered = call.llm.requests[0].tools or []
    assert {t["function"]["name"] for t in offered} == set(TOOLS)
    (reply,) = call.agent_turns("reply")
    assert reply["text"] == "You are welcome, goodbye!" and reply["status"] == "completed"


async def test_end_call_without_words_says_the_settings_goodbye_first() -> None:
    llm = FakeLLM([LLMReply("", (ToolCall("end_call"),))])
    call = await run_call([greeted(), Say("Bye.", 600)], llm=llm, tools=TOOLS)
    _hang_up_after(call, "goodbye")
    assert [t["text"] for t in call.agent_turns("goodbye")] == [call.settings.agent.end_call_goodbye]


async def test_transfer_call_says_hold_then_dials_the_profiles_number() -> None:
    llm = FakeLLM([LLMReply("", (ToolCall("transfer_call", {"reason": "person"}),))])
    call = await run_call(
        [greeted(), Say("Can I talk to a real person please?")],
        llm=llm,
        tools=TOOLS,
        profile={"transfer_number": NUMBER},
    )
    assert call.carrier is not None
    ((at, sid, number),) = call.carrier.transfers
    assert (sid, number) == (call.transport.started.call_id, NUMBER)
    (said,) = call.log.finished("transfer")
    played = call.log.played(f"{said}:end")
    assert played is not None and at >= played  # "Please hold…" was heard first
    assert call.log.caller_left_at is not None  # the carrier took the caller away
    assert call.carrier.hang_ups == [] and call.summary.status == "completed"


async def test_transfer_without_a_number_apologises_and_stays_on_the_line() -> None:
    llm = FakeLLM([LLMReply("", (ToolCall("transfer_call"),))])
    script = [greeted(), Say("Can I talk to a real person please?"), finished("apology"), HangUp()]
    call = await run_call(script, llm=llm, tools=TOOLS, profile={"transfer_number": None})
    assert call.carrier is not None and call.carrier.transfers == [] and call.carrier.hang_ups == []
    (apology,) = call.agent_turns("apology")
    assert "transfer" in apology["text"]


async def test_disabled_tools_are_not_offered_or_run() -> None:
    llm = FakeLLM([LLMReply("Bye!", (ToolCall("end_call"),))])
    call = await run_call([greeted(), Say("Thanks, bye.", 900), finished("reply"), HangUp()], llm=llm, tools=[])
    assert call.llm.requests[0].tools is None
    assert call.carrier is not None and call.carrier.hang_ups == []
    assert call.store.actions.get(call.transport.started.call_id, []) == []


async def test_a_failed_carrier_hang_up_still_ends_the_call() -> None:
    carrier = FakeCarrier()
    carrier.fail = True  # Twilio's REST API answers 500: the stream is never stopped from its side
    llm = FakeLLM([LLMReply("Goodbye!", (ToolCall("end_call"),))])
    call = await run_call([greeted(), Say("Bye.", 600)], llm=llm, tools=TOOLS, carrier=carrier)
    assert len(carrier.hang_ups) == 1 and call.log.caller_left_at is None
    assert call.log.closed_at is not None and call.log.closed_at >= carrier.hang_ups[0][0]
    assert call.summary.status == "completed"
