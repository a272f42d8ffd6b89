"""The LLM prewarm: while the greeting plays, the call's prompt prefix is prefilled once, so the
caller's first turn reuses it (llama.cpp's last-prompt cache, vLLM's prefix cache)."""

from __future__ import annotations

from tests.fakes import FakeLLM, HangUp, Say, run_call
from tests.session.support import PROBLEM, finished, greeted


async def test_one_prewarm_after_the_greeting_shares_the_first_replys_prefix() -> None:
    llm = FakeLLM(["Sorry to hear that. What is your address?"])
    call = await run_call([greeted(), Say(PROBLEM, 1500), finished("reply"), HangUp()], llm=llm)

    (warm,) = llm.prewarms
    (first,) = llm.requests
    greeting = call.agent_turns()[0]["text"]
    assert [m["role"] for m in warm.messages] == ["system", "assistant", "user"]
    assert warm.messages[0]["content"].strip()  # the system prompt, the bulk of the prefix
    assert warm.messages[1]["content"] == greeting and warm.messages[2]["content"] == ""
    assert first.messages[:2] == warm.messages[:2]  # the prefix the server now holds
    assert first.user_text == PROBLEM
    assert warm.at < first.at
    assert warm.tools == first.tools


async def test_no_prewarm_when_it_is_switched_off() -> None:
    llm = FakeLLM(["Sorry to hear that. What is your address?"])
    await run_call([greeted(), Say(PROBLEM, 1500), finished("reply"), HangUp()], llm=llm, llm_prewarm=False)
    assert llm.prewarms == [] and len(llm.requests) == 1
