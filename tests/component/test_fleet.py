"""Gateways that share calls (issue 16): two ``python -m gateway`` processes behind the Redis registry.

Real: Redis, STT (faster-whisper), TTS (Kokoro), both gateway processes, the simulated Twilio call
(``tools/twilio_sim.py``: it follows the TwiML after a stream ends, as Twilio does, and uses the
number's fallback URL when the voice URL fails). Scripted: the LLM, Twilio's REST API, the webhook
receiver.

* Calls spread by load: the voice webhook, on either gateway, streams each call to the one with
  fewer calls; a SIGTERMed gateway drains (no new calls; its own go on and end; then it exits).
* One gateway SIGKILLed mid-call: the call's stream breaks, Twilio's ``<Redirect>`` reaches the
  other gateway, which resumes the call with its history within 3 s; ``call.completed`` arrives
  once, from the gateway that finished the call.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.component.fakes import FakeLLM, FakeWebhook
from tests.component.gateways import GatewayProcess, upstream_env
from tools.twilio_sim import SimulatedCall

pytestmark = pytest.mark.timeout(300)

GREETING = "Acme Plumbing, how can I help?"
PROBLEM = "My kitchen sink is leaking."
ANSWER = "Sorry to hear that. What is your address?"
ADDRESS = "Twelve Main Street."  # Whisper writes "12 Main Street."
RESUME_LINE = "Sorry, you cut out for a second. What is your address?"
RESUME_BOUND_S = 3.0
"""The issue's bound: from the SIGKILL to the caller hearing the other gateway."""


@pytest.fixture
def fleet_env(speech_stack, fake_llm, fake_twilio, fake_webhook, tmp_path: Path) -> dict[str, str]:
    return {
        **upstream_env(speech_stack, fake_llm, fake_twilio, fake_webhook, tmp_path),
        "GATEWAY_DATABASE__ENABLED": "false",
        "GATEWAY_RECORDING__ENABLED": "false",
        "GATEWAY_LISTENING__TURN_DETECTION": "silence",
        "GATEWAY_AGENT__GREETING": GREETING,
        "GATEWAY_CALL__REPROMPT_AFTER_S": "60",
        "GATEWAY_CALL__HANGUP_AFTER_S": "120",
        "GATEWAY_REDIS__HEARTBEAT_TTL_S": "2",
        "GATEWAY_REDIS__ORPHAN_SWEEP_INTERVAL_S": "0.5",
        "GATEWAY_FLEET__DRAIN_TIMEOUT_S": "60",
    }


def registered(redis_url: str) -> dict[str, dict[str, str]]:
    """Live registry entries by advertised URL."""
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        out = {}
        for gid in r.zrangebyscore("sb:fleet:gateways", time.time() - 2, "+inf"):
            entry = r.hgetall(f"sb:gateway:{gid}")
            if entry.get("url"):
                out[entry["url"]] = entry
        return out
    finally:
        r.close()


@pytest.fixture
def gateways(fleet_env, speech_stack, tmp_path: Path) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    a = GatewayProcess(fleet_env, tmp_path / "gateway-a.log", advertise=True).launch()
    b = GatewayProcess(fleet_env, tmp_path / "gateway-b.log", advertise=True).launch()
    try:
        a.wait_healthy()
        b.wait_healthy()
        deadline = time.monotonic() + 10
        while not {a.url, b.url} <= set(registered(speech_stack.redis_url)):
            assert time.monotonic() < deadline, "the gateways did not register"
            time.sleep(0.1)
        yield a, b
    finally:
        a.stop()
        b.stop()


def served_by(call: SimulatedCall, stream: int = 0) -> str:
    """The base URL of the gateway serving the call's ``stream``-th stream."""
    return "http://" + call.result.stream_urls[stream].split("://", 1)[1].removesuffix("/twilio/stream")


async def place(webhook: str, fallback: str | None = None) -> SimulatedCall:
    """A call whose number's voice URL is ``webhook``; returns once its stream has started."""
    call = SimulatedCall(webhook, auth_token="test-token", fallback_url=fallback)
    await call.connect()
    return call


def test_calls_spread_by_load_and_a_draining_gateway_takes_no_new_call(
    gateways, fake_llm: FakeLLM, fake_webhook: FakeWebhook, speak, speech_stack
) -> None:
    a, b = gateways
    fake_llm.replies[:] = [ANSWER]
    problem = speak(PROBLEM)

    async def scenario() -> tuple[list[SimulatedCall], list[SimulatedCall], SimulatedCall]:
        first = [await place(url) for url in (a.url, a.url, b.url, b.url)]  # webhooks on both gateways
        on_a = [c for c in first if served_by(c) == a.url]
        assert a.proc is not None
        a.proc.send_signal(signal.SIGTERM)  # drain a
        deadline = time.monotonic() + 10
        while registered(speech_stack.redis_url).get(a.url, {}).get("draining") != "1":
            assert time.monotonic() < deadline, "a never said it was draining"
            await asyncio.sleep(0.1)
        later = [await place(url) for url in (a.url, b.url)]  # a still answers webhooks: for b
        talker = on_a[0]
        await talker.wait_greeting()
        talker.say(problem)  # a's calls go on while it drains
        await talker.wait_until(lambda: any(m.startswith("reply") for m in talker.result.marks_echoed), 60, "reply")
        assert a.proc.poll() is None, "a stopped with calls open"
        for call in on_a:
            await call.hang_up()
        for call in [c for c in first if c not in on_a] + later:
            await call.hang_up()
        return first, later, talker

    first, later, talker = asyncio.run(scenario())
    assert Counter(served_by(c) for c in first) == {a.url: 2, b.url: 2}, [served_by(c) for c in first]
    assert [served_by(c) for c in later] == [b.url, b.url]
    assert a.proc is not None
    a.proc.wait(timeout=15)  # its last call ended: the drain is over, it shut down by itself
    assert a.proc.returncode in (0, -signal.SIGTERM), a.tail()
    assert "drained: no call left" in a.log.read_text()
    deadline = time.monotonic() + 15
    while any(fake_webhook.completed(c.call_sid) is None for c in first + later):
        assert time.monotonic() < deadline, "a call.completed is missing"
        time.sleep(0.1)
    assert fake_webhook.completed(talker.call_sid)["status"] == "completed"  # type: ignore[index]


def test_a_killed_gateways_call_resumes_on_the_other_with_its_history(
    gateways, fake_llm: FakeLLM, fake_webhook: FakeWebhook, speak, tmp_path: Path
) -> None:
    a, b = gateways
    fake_llm.replies[:] = [ANSWER, "Thanks. A plumber will be there this afternoon."]
    problem, address = speak(PROBLEM), speak(ADDRESS)

    async def scenario() -> tuple[SimulatedCall, GatewayProcess, GatewayProcess, float]:
        call = await place(a.url, fallback=b.url + "/twilio/voice")  # the number: voice URL a, fallback b
        lost, other = (a, b) if served_by(call) == a.url else (b, a)
        await call.wait_greeting()
        call.say(problem)
        await call.wait_until(
            lambda: any(m.startswith("reply") and m.endswith(":end") for m in call.result.marks_echoed), 60, "answer"
        )
        assert lost.proc is not None
        killed_at = time.monotonic()
        os.kill(lost.proc.pid, signal.SIGKILL)
        await call.wait_until(lambda: bool(call.result.resumed_audio_at), 20, "the resumed call's first audio")
        await call.wait_until(
            lambda: any(m.startswith("resume") and m.endswith(":end") for m in call.result.marks_echoed),
            30,
            "the resume line played to its end",
        )
        call.say(address)
        await call.wait_until(lambda: len(fake_llm.requests) >= 2, 60, "the second answer")
        await call.wait_until(
            lambda: sum(m.startswith("reply") and m.endswith(":end") for m in call.result.marks_echoed) >= 2,
            60,
            "the second answer played",
        )
        await call.hang_up()
        return call, lost, other, killed_at

    call, _lost, other, killed_at = asyncio.run(scenario())
    resumed_s = call.result.resumed_audio_at[0] - killed_at
    stream_s = call.result.resumed_at[0] - killed_at
    print(f"resume after SIGKILL: new stream started {stream_s:.2f} s, caller hears the agent {resumed_s:.2f} s")
    assert len(call.result.streams) == 2 and served_by(call, 1) == other.url
    assert resumed_s < RESUME_BOUND_S, f"resumed after {resumed_s:.2f}s\n{other.tail()}"
    assert "resumed from" in other.log.read_text()
    history = [(m["role"], m["content"]) for m in fake_llm.last_messages()[1:]]
    assert history[-4:-1] == [("user", PROBLEM), ("assistant", ANSWER), ("assistant", RESUME_LINE)]
    assert history[-1][0] == "user" and "Main Street" in history[-1][1]
    deadline = time.monotonic() + 15
    while fake_webhook.completed(call.call_sid) is None:
        assert time.monotonic() < deadline, f"no call.completed\n{other.tail()}"
        time.sleep(0.1)
    time.sleep(3.0)  # past the dead gateway's heartbeat (2 s) and a sweep (0.5 s): nobody finishes it again
    bodies = [
        b for b in fake_webhook.bodies if b.get("call_sid") == call.call_sid and b.get("event") == "call.completed"
    ]
    assert len(bodies) == 1, bodies
    (body,) = bodies
    assert body["status"] == "completed"
    said = [t["text"] for t in body["turns"]]
    assert said[:4] == [GREETING, PROBLEM, ANSWER, RESUME_LINE] and "Main Street" in said[4], said
