"""Function calling on a live call: end_call hangs up and transfer_call dials through Twilio's REST
API (a local fake), bookings are stored on the call. The LLM is scripted; both tool-call wire
forms are used (vLLM's structured deltas and llama.cpp's Hermes text)."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis

from tests.component.test_conversation import start_call

pytestmark = pytest.mark.timeout(180)
TOOLS = ["end_call", "transfer_call", "take_message", "book_appointment"]


def actions(redis_url: str, call_sid: str) -> list[dict]:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    return [json.loads(a) for a in r.lrange(f"sb:call:{call_sid}:actions", 0, -1)]


def run_call(url: str, speak, text: str, until):
    audio = speak(text)

    async def scenario():
        call = await start_call(url)
        call.say(audio)
        await call.wait_until(lambda: until(call), 60, "the scripted outcome")
        await call.close()
        return call

    return asyncio.run(scenario())


def test_end_call_says_goodbye_then_hangs_up_via_twilio(gateway, fake_llm, fake_twilio, speak, speech_stack):
    url, _ = gateway(tools=TOOLS)
    # The same script for every request: Smart Turn may take the caller's comma pause for the end of the
    # turn, and the reply to the first half is then cancelled when the caller goes on talking.
    fake_llm.replies[:] = ['You are welcome, goodbye! <tool_call>{"name": "end_call", "arguments": {}}</tool_call>'] * 2
    call = run_call(url, speak, "That's all I needed, thanks, bye.", lambda c: c.closed_by_server)
    assert (call.call_sid, {"Status": "completed"}) in fake_twilio.updates
    heard = [m for m in call.result.marks_echoed if m.startswith("reply") and m.endswith(":end")]
    assert heard, "the goodbye played to its end before the hang-up"
    assert [a["tool"] for a in actions(speech_stack.redis_url, call.call_sid)] == ["end_call"]
    assert "tools" in fake_llm.requests[-1] and {t["function"]["name"] for t in fake_llm.requests[-1]["tools"]} == set(
        TOOLS
    )


def test_transfer_call_dials_the_business_number(gateway, fake_llm, fake_twilio, speak):
    url, _ = gateway(tools=TOOLS, transfer_number="+15557654321")
    fake_llm.replies[:] = [
        {"text": "", "tool_calls": [{"name": "transfer_call", "arguments": {"reason": "person"}}]}
    ] * 2
    call = run_call(url, speak, "Can I talk to a real person please?", lambda c: bool(fake_twilio.updates))
    sid, form = fake_twilio.updates[0]
    assert sid == call.call_sid
    assert "<Dial>+15557654321</Dial>" in form["Twiml"]
    assert any(m.startswith("transfer") for m in call.result.marks_echoed)  # "Please hold…" was heard first


def test_booking_fields_are_stored_on_the_call(gateway, fake_llm, speak, speech_stack):
    url, _ = gateway(tools=TOOLS)
    booking = {
        "caller_name": "John Smith",
        "address": "42 Oak Street",
        "problem": "leaking sink",
        "time_window": "tomorrow morning",
    }
    fake_llm.replies[:] = [
        {
            "text": "Great, you're booked for tomorrow morning.",
            "tool_calls": [{"name": "book_appointment", "arguments": booking}],
        }
    ] * 2
    call = run_call(
        url,
        speak,
        "I'm John Smith at 42 Oak Street, please come tomorrow morning.",
        lambda c: any(m.startswith("reply") and m.endswith(":end") for m in c.result.marks_echoed),
    )
    stored = actions(speech_stack.redis_url, call.call_sid)
    assert stored and stored[0]["tool"] == "book_appointment" and stored[0]["arguments"] == booking


def test_disabled_tools_are_not_offered_or_run(gateway, fake_llm, fake_twilio, speak, speech_stack):
    url, _ = gateway(tools=[])
    fake_llm.replies[:] = ['Bye! <tool_call>{"name": "end_call", "arguments": {}}</tool_call>']
    call = run_call(url, speak, "Thanks, bye.", lambda c: any(m.startswith("reply") for m in c.result.marks_echoed))
    assert "tools" not in fake_llm.requests[-1]
    assert fake_twilio.updates == [] and actions(speech_stack.redis_url, call.call_sid) == []
