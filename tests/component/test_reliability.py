"""Every call ends, every caller is answered, nothing is lost (issue 11): the gateway in-process with
real Redis, STT (faster-whisper), TTS (Kokoro), Silero VAD; scripted LLM, Twilio REST and webhook.

Each test reproduces a failure of the fault probe: calls the gateway hung up on that never
finished, an oversized frame that froze the loop, streams refused behind a proxy or opened with a
replayed signature, turns lost in a Redis restart, a failed reply glued to the next turn and taken
for caller silence.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import time

import httpx
import pytest
import redis
import websockets
from prometheus_client import REGISTRY

from shared import twilio_media as tw
from tests.component.conftest import silence
from tests.component.fakes import FakeWebhook
from tools.stack import free_port, redis_ping
from tools.twilio_sim import SimulatedCall

pytestmark = pytest.mark.timeout(180)

LONG_REPLY = (
    "Sure, I can help with that. Our plumbers fix leaks and clear blocked drains every single day of the week. "
    "We also install water heaters and repair toilets all across Springfield and the nearby towns. "
    "Could you tell me your name and your address please?"
)


def record(redis_url: str, call_sid: str) -> dict:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    meta = r.hgetall(f"sb:call:{call_sid}")
    meta["turns"] = [json.loads(t) for t in r.lrange(f"sb:call:{call_sid}:turns", 0, -1)]
    return meta


async def start_call(url: str, settle_s: float = 1.5, **kw) -> SimulatedCall:
    call = SimulatedCall(url, auth_token="test-token", **kw)
    await call.connect()
    await call.wait_greeting(settle_s=settle_s)
    return call


async def wait_finished(app, hook: FakeWebhook, call_sid: str, timeout_s: float = 15.0) -> dict:
    """Wait until the gateway let go of the call and its ``call.completed`` arrived."""
    deadline = time.monotonic() + timeout_s
    while hook.completed(call_sid) is None or call_sid in app.state.deps.live_calls:
        assert time.monotonic() < deadline, f"call {call_sid} never finished"
        await asyncio.sleep(0.05)
    body = hook.completed(call_sid)
    assert body is not None
    return body


def test_silent_caller_is_reprompted_hung_up_and_the_call_completes(gateway, fake_webhook, fake_twilio, speech_stack):
    url, app = gateway(reprompt_after_s=1.0, hangup_after_s=2.5, webhook_url=fake_webhook.url)

    async def scenario():
        call = await start_call(url)
        await call.wait_until(lambda: call.closed_by_server, 40, "the gateway hanging up")
        body = await wait_finished(app, fake_webhook, call.call_sid)
        await call.close()
        return call, body

    call, body = asyncio.run(scenario())
    assert body["status"] == "completed"
    kinds = [t.get("reply_id", "").split("-")[0] for t in body["turns"]]
    assert kinds[:3] == ["greeting", "reprompt", "goodbye"]
    stored = record(speech_stack.redis_url, call.call_sid)
    assert stored["status"] == "completed" and stored["state"] == "ended"
    assert (call.call_sid, {"Status": "completed"}) in fake_twilio.updates


def test_caller_hanging_up_while_agent_audio_plays_completes_the_call(
    gateway, fake_llm, fake_webhook, speak, speech_stack
):
    url, app = gateway(webhook_url=fake_webhook.url)
    fake_llm.replies[:] = [LONG_REPLY]
    problem = speak("My kitchen sink is leaking.")

    async def scenario():
        call = await start_call(url)
        call.say(problem)
        await call.wait_until(lambda: any(m.startswith("reply") for m in call.result.marks_received), 60, "reply audio")
        await asyncio.sleep(0.3)
        await call.close()  # the socket closes mid-audio, no `stop`
        return call, await wait_finished(app, fake_webhook, call.call_sid)

    call, body = asyncio.run(scenario())
    assert body["status"] == "completed"
    reply = next(t for t in body["turns"] if t.get("reply_id", "").startswith("reply"))
    assert reply["status"] == "hangup" and reply["interrupted"]
    assert record(speech_stack.redis_url, call.call_sid)["status"] == "completed"


def test_goodbye_during_a_tts_outage_still_ends_the_call(gateway, fake_webhook, speech_stack):
    dead_tts = f"http://127.0.0.1:{free_port()}"
    url, app = gateway(tts_url=dead_tts, reprompt_after_s=0.5, hangup_after_s=1.5, webhook_url=fake_webhook.url)

    async def scenario():
        call = SimulatedCall(url, auth_token="test-token")
        await call.connect()
        await call.wait_until(lambda: call.closed_by_server, 30, "the gateway hanging up")
        body = await wait_finished(app, fake_webhook, call.call_sid)
        await call.close()
        return call, body

    call, body = asyncio.run(scenario())
    assert body["status"] == "completed"
    assert record(speech_stack.redis_url, call.call_sid)["status"] == "completed"


def test_a_failed_reply_is_kept_apart_and_is_not_caller_silence(gateway, fake_llm, fake_webhook, speak):
    url, app = gateway(reprompt_after_s=1.5, hangup_after_s=60, webhook_url=fake_webhook.url)
    settings = app.state.settings
    fake_llm.replies[:] = [{"status": 500}, "Sure. What is your address?"]
    first, second = speak("My kitchen sink is leaking."), speak("Can somebody come today?")

    async def scenario():
        # The caller speaks right after the greeting: with the default 1.5 s settle the ordinary
        # re-prompt (also after 1.5 s) could come first, and this test is about the one after a failure.
        call = await start_call(url, settle_s=0.2)
        call.say(first)
        await call.wait_until(lambda: len(fake_llm.requests) >= 1, 60, "first LLM request")
        await call.wait_until(  # the whole re-prompt (its first clause is a segment of its own)
            lambda: any(m.startswith("reprompt") and m.endswith(":end") for m in call.result.marks_received),
            30,
            "re-prompt",
        )
        await asyncio.sleep(1.0)
        call.say(second)
        await call.wait_until(lambda: len(fake_llm.requests) >= 2, 60, "second LLM request")
        await call.wait_until(lambda: any(m.startswith("reply") for m in call.result.marks_echoed), 60, "the answer")
        await call.hang_up()
        return await wait_finished(app, fake_webhook, call.call_sid)

    body = asyncio.run(scenario())
    asked = fake_llm.last_messages()[-1]["content"].lower()
    assert "today" in asked and "sink" not in asked, asked  # the failed utterance is not glued on
    users = [t for t in body["turns"] if t["role"] == "user"]
    assert users[0].get("unanswered") and users[0]["failed"] == "llm" and "sink" in users[0]["text"].lower()
    assert not users[1].get("unanswered")
    said = [t["text"] for t in body["turns"] if t["role"] == "assistant"]
    assert settings.agent.trouble_reprompt_text in said
    assert settings.agent.reprompt_text not in said and settings.agent.goodbye_text not in said


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_oversized_frames_are_skipped_counted_and_the_loop_stays_responsive(gateway, fake_llm, speak):
    url, _ = gateway()
    fake_llm.replies[:] = ["Sorry to hear that. What is your address?"]
    problem = speak("My kitchen sink is leaking.")
    before = {k: _sample("gateway_oversized_frames_total", {"kind": k}) for k in ("message", "payload")}

    async def scenario():
        call = await start_call(url)
        big_payload = base64.b64encode(b"\xff" * 8000).decode()
        huge = json.dumps({"event": "media", "streamSid": call.stream_sid, "media": {"payload": "A" * 900_000}})
        slowest = 0.0
        async with httpx.AsyncClient() as client:
            for _ in range(5):
                await call.send_raw(huge)
                await call.send_raw(
                    json.dumps({"event": "media", "streamSid": call.stream_sid, "media": {"payload": big_payload}})
                )
                t0 = time.monotonic()
                assert (await client.get(url + "/health", timeout=5)).status_code == 200
                slowest = max(slowest, time.monotonic() - t0)
        call.say(problem)
        await call.wait_until(lambda: any(m.startswith("reply") for m in call.result.marks_received), 60, "reply")
        await call.hang_up()
        return slowest

    slowest = asyncio.run(scenario())
    assert _sample("gateway_oversized_frames_total", {"kind": "message"}) - before["message"] == 5
    assert _sample("gateway_oversized_frames_total", {"kind": "payload"}) - before["payload"] == 5
    assert slowest < 1.0, f"/health took {slowest:.2f}s while oversized frames arrived"


def test_signed_wss_stream_behind_public_url_connects(gateway):
    public = "https://8080-pod123.proxy.runpod.net"
    url, _ = gateway(public_url=public)

    async def scenario():
        call = SimulatedCall(url, auth_token="test-token", public_url=public)
        await call.connect()
        await call.wait_greeting()
        heard = call.result.greeting_bytes
        await call.hang_up()
        return heard

    assert asyncio.run(scenario()) > 0  # the greeting played: the stream was admitted


def test_a_replayed_stream_signature_cannot_open_another_call(gateway, speech_stack):
    url, _ = gateway()
    from twilio.request_validator import RequestValidator

    ws_url = url.replace("http://", "ws://") + "/twilio/stream"
    signature = {"X-Twilio-Signature": RequestValidator("test-token").compute_signature(ws_url, {})}

    async def open_stream(call_sid: str, params: dict[str, str]) -> int | None:
        """Open a stream and send ``start``; the close code if the gateway closed it, else None."""
        async with websockets.connect(ws_url, additional_headers=signature) as ws:
            await ws.send(tw.serialize_event(tw.Connected()))
            start = tw.Start("MZ" + call_sid[2:], call_sid, "AC1", ("inbound",), params, sequence_number=1)
            await ws.send(tw.serialize_event(start))
            try:
                async with asyncio.timeout(5):
                    while True:
                        await ws.recv()
            except websockets.ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd else -1
            except TimeoutError:
                return None

    async def scenario():
        call = await start_call(url)  # a real call: webhook, token, stream
        _stream_url, params = await call.twiml()  # the attacker saw a TwiML and a signed upgrade
        forged_sid = "CA" + "f" * 32
        other = await open_stream(forged_sid, {**params, "CallSid": forged_sid})
        no_token = await open_stream("CA" + "e" * 32, {"From": "+1", "To": "+2"})
        second = await open_stream(call.call_sid, {**params})  # a second stream for a live call
        await call.hang_up()
        return other, no_token, second

    other, no_token, second = asyncio.run(scenario())
    assert other == 1008 and no_token == 1008 and second == 1008
    assert not record(speech_stack.redis_url, "CA" + "f" * 32)["turns"]
    assert not redis.Redis.from_url(speech_stack.redis_url).exists("sb:call:CA" + "f" * 32)


def test_calls_endpoint_needs_the_admin_key(gateway):
    url, _ = gateway()
    assert httpx.get(url + "/calls/CA1").status_code == 401
    assert httpx.get(url + "/calls/CA1", headers={"X-Admin-Key": "wrong"}).status_code == 401


class RedisServer:
    """A redis-server of the test's own on a free port (the shared one on 6379 is never restarted)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not redis_ping(self.port):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


def test_a_redis_restart_mid_call_loses_no_turn(gateway, fake_llm, fake_webhook, speak):
    server = RedisServer()
    server.start()
    url, app = gateway(redis_url=server.url, webhook_url=fake_webhook.url)
    fake_llm.replies[:] = ["Sorry to hear that.", "Okay, noted.", "Great, see you then."]
    lines = [speak("My kitchen sink is leaking."), speak("It started this morning."), speak("Tomorrow works.")]

    async def turn(call: SimulatedCall, n: int) -> None:
        call.say(lines[n] + silence(300))
        await call.wait_until(lambda: len(fake_llm.requests) >= n + 1, 60, f"LLM request {n + 1}")
        await call.wait_until(
            lambda: sum(m.startswith("reply") and m.endswith(":end") for m in call.result.marks_echoed) >= n + 1,
            60,
            f"reply {n + 1} played",
        )

    async def scenario():
        call = await start_call(url)
        await turn(call, 0)
        server.stop()  # Redis dies (and keeps nothing: no persistence)
        await turn(call, 1)
        server.start()
        await turn(call, 2)
        await call.hang_up()
        return call, await wait_finished(app, fake_webhook, call.call_sid, timeout_s=30)

    try:
        call, body = asyncio.run(scenario())
        stored = record(server.url, call.call_sid)
    finally:
        server.stop()
    spoken = [t["text"].lower() for t in body["turns"] if t["role"] == "user"]
    assert len(spoken) == 3 and "sink" in spoken[0] and "morning" in spoken[1] and "tomorrow" in spoken[2]
    assert [t["text"] for t in stored["turns"]] == [t["text"] for t in body["turns"]]
    assert stored["status"] == "completed"
