"""A silent caller is re-prompted, then told goodbye and hung up on, on the settings' schedule.
(With real models: tests/component/test_reliability.py.)"""

from __future__ import annotations

from tests.fakes import run_call

TICK_S = 0.25
"""How often the conversation checks for silence (a little slack on each deadline)."""


async def test_a_silent_caller_is_reprompted_then_hung_up_on() -> None:
    call = await run_call([])  # the caller connects and never says a word (default timings: 8 s, 20 s)
    s = call.settings
    assert call.kinds() == ["greeting", "reprompt", "goodbye"]
    said = {t["reply_id"].rsplit("-", 1)[0]: t["text"] for t in call.agent_turns()}
    assert said["reprompt"] == s.agent.reprompt_text and said["goodbye"] == s.agent.goodbye_text

    greeting_end = call.log.played(f"{call.log.finished('greeting')[0]}:end")
    reprompt_id, goodbye_id = call.log.replies("reprompt")[0], call.log.replies("goodbye")[0]
    reprompt_at, goodbye_at = call.log.first_frame(reprompt_id), call.log.first_frame(goodbye_id)
    assert greeting_end is not None and reprompt_at is not None and goodbye_at is not None
    assert s.call.reprompt_after_s <= reprompt_at - greeting_end <= s.call.reprompt_after_s + 2 * TICK_S
    reprompt_end = call.log.played(f"{reprompt_id}:end")
    assert reprompt_end is not None
    assert goodbye_at - greeting_end >= s.call.hangup_after_s
    assert goodbye_at - reprompt_end <= s.call.hangup_after_s + 2 * TICK_S

    assert call.carrier is not None
    ((hung_up_at, _),) = call.carrier.hang_ups
    goodbye_end = call.log.played(f"{goodbye_id}:end")
    assert goodbye_end is not None and hung_up_at >= goodbye_end  # heard to the end, then hung up
    assert call.summary.status == "completed" and call.log.closed_at is not None
    assert [t["role"] for t in call.turns] == ["assistant"] * 3


async def test_without_carrier_credentials_the_silent_call_still_ends() -> None:
    call = await run_call([], no_carrier=True, reprompt_after_s=2, hangup_after_s=4)
    assert call.kinds() == ["greeting", "reprompt", "goodbye"]
    assert call.log.closed_at is not None and call.summary.status == "completed"
