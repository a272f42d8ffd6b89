"""A call that outlives its stream (gateway/conversation/resume.py), over fakes in loop time.

A resumed stream picks the call up from its stored record (turns, history, start time) and opens
with "Sorry, you cut out for a second"; a stream lost without ``stop`` lets the call go when another
stream takes it over, and finishes it itself when none does; a call the session ends is marked
``ending`` before the close, so a late ``<Redirect>`` cannot resume it.
(With real processes and a SIGKILL: tests/component/test_fleet.py.)
"""

from __future__ import annotations

from typing import Any

from gateway.conversation.resume import RESUME_PARAMETER, last_sentence
from tests.fakes import Do, FakeLLM, FakeStore, FakeTransport, HangUp, Pause, Say, run_call
from tests.session.support import PROBLEM, finished, greeted

SID = "CA00000000000000000000000000000001"
EARLIER = [
    {"role": "assistant", "text": "Thanks for calling Acme Plumbing. How can I help?", "reply_id": "greeting-1"},
    {"role": "user", "text": PROBLEM, "started_at": 1000.0, "ended_at": 1002.0},
    {"role": "assistant", "text": "Sorry to hear that. What is your address?", "reply_id": "reply-2"},
]
STARTED_AT = 990.0


def live_store(turns: list[dict[str, Any]], grant: str = "grant-1") -> FakeStore:
    """A store holding the call as its lost gateway left it: live, claimed by the old stream, a grant issued."""
    store = FakeStore()
    store.calls[SID] = {"call_sid": SID, "status": "in-progress", "state": "speaking", "started_at": STARTED_AT}
    store.calls[SID]["gateway"] = "gw-dead"
    store.turns[SID] = [dict(t) for t in turns]
    store.streams[SID] = "MZold"
    store.grants[SID] = grant
    return store


def resumed_stream(script: list[Any], grant: str = "grant-1") -> FakeTransport:
    params = {"From": "+15550100001", "To": "+15550100002", RESUME_PARAMETER: grant}
    return FakeTransport(script, call_id=SID, stream_id="MZnew", parameters=params)


async def test_a_resumed_call_picks_up_where_it_was_with_its_history() -> None:
    store = live_store(EARLIER)
    llm = FakeLLM(["Thanks, a plumber will be there this afternoon."])
    transport = resumed_stream([finished("resume"), Say("Twelve Main Street.", 1500), finished("reply"), HangUp()])
    call = await run_call(transport, store=store, llm=llm)
    assert call.kinds() == ["greeting", "reply", "resume", "reply"]  # the stored turns, then this stream's
    said = call.agent_turns("resume")[0]["text"]
    assert said == "Sorry, you cut out for a second. What is your address?"
    (request,) = llm.requests
    history = [(m["role"], m["content"]) for m in request.messages[1:]]
    assert history == [
        ("assistant", EARLIER[0]["text"]),
        ("user", PROBLEM),
        ("assistant", EARLIER[2]["text"]),
        ("assistant", said),
        ("user", "Twelve Main Street."),
    ]
    summary = call.summary
    assert summary.started_at == STARTED_AT
    assert [t["text"] for t in summary.turns[:3]] == [t["text"] for t in EARLIER]
    assert [t["text"] for t in call.stored_turns] == [t["text"] for t in summary.turns]  # nothing written twice
    assert call.hooks.resumed == [SID] and len(call.hooks.summaries) == 1
    assert store.streams[SID] == "MZnew" and SID not in store.grants  # the grant is used up
    assert store.calls[SID]["gateway"] == "gw-test"


async def test_when_the_caller_spoke_last_the_resumed_agent_asks_again() -> None:
    store = live_store(EARLIER[:2])
    transport = resumed_stream([finished("resume"), HangUp()])
    call = await run_call(transport, store=store)
    assert call.agent_turns("resume")[0]["text"] == call.settings.agent.resume_ask_text


async def test_a_stream_with_a_wrong_grant_is_refused_and_the_call_is_untouched() -> None:
    store = live_store(EARLIER, grant="grant-1")
    transport = resumed_stream([Pause(500)], grant="forged")
    call = await run_call(transport, store=store)
    assert call.log.close_code == 1008 and call.hooks.summaries == []
    assert store.streams[SID] == "MZold" and store.grants[SID] == "grant-1"
    assert store.calls[SID]["status"] == "in-progress"


async def test_a_lost_stream_lets_the_call_go_when_another_stream_takes_it_over() -> None:
    store = FakeStore()
    line: list[FakeTransport] = []
    transport = FakeTransport(
        [
            greeted(),
            Say(PROBLEM, 1500),
            finished("reply"),
            Do(lambda: line[0].lose()),  # and at once another gateway's stream takes the call over:
            Do(lambda: store.streams.__setitem__(SID, "MZresumed")),
        ]
    )
    line.append(transport)
    call = await run_call(transport, store=store, llm=FakeLLM(["Sorry to hear that. What is your address?"]))
    assert call.hooks.summaries == [] and call.hooks.moved == [SID]  # finished (and webhooked) elsewhere, once
    assert store.calls[SID]["status"] == "in-progress" and store.calls[SID]["state"] == "suspended"
    assert [t["role"] for t in store.turns[SID]] == ["assistant", "user", "assistant"]
    assert call.log.caller_left_at is not None
    assert call.call_s - call.log.caller_left_at < 1.0  # let go at the takeover, not after the whole wait


async def test_a_lost_stream_nobody_resumes_is_finished_here_after_the_wait() -> None:
    transport = FakeTransport()
    transport.script = [greeted(), Do(transport.lose)]
    call = await run_call(transport, fleet_resume_wait_s=3.0)
    assert call.summary.status == "completed" and call.hooks.moved == []
    assert "suspended" in call.store.states
    assert call.log.caller_left_at is not None
    assert 3.0 <= call.call_s - call.log.caller_left_at < 3.5


async def test_a_call_the_agent_ends_is_marked_ending_before_its_stream_closes() -> None:
    call = await run_call([greeted()], reprompt_after_s=1.0, hangup_after_s=2.0)
    assert call.carrier is not None and call.carrier.hang_ups  # the agent hung up
    states = call.store.states
    assert "ending" in states and "suspended" not in states
    assert call.store.calls[SID]["state"] == "ended"


def test_last_sentence() -> None:
    assert last_sentence("Sure, I can help. What's your address?") == "What's your address?"
    assert last_sentence("One sentence only") == "One sentence only"
    assert last_sentence("  ") == ""
