"""The gateway as a process: SIGTERM mid-call stops it within a bound with the call finished, and a
call whose gateway was killed (-9) is finished by the next gateway that starts (issue 11).

Real: Redis, STT, TTS, the gateway process (`python -m gateway`, SQLite database and webhook
outbox). Scripted: the LLM, Twilio's REST API and the webhook receiver.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

from tests.component.fakes import FakeWebhook
from tests.component.gateways import GatewayProcess, upstream_env
from tools.twilio_sim import SimulatedCall

pytestmark = pytest.mark.timeout(240)

LONG_REPLY = (
    "Sure, I can help with that. Our plumbers fix leaks and clear blocked drains every single day of the week. "
    "We also install water heaters and repair toilets all across Springfield and the nearby towns."
)


@pytest.fixture
def process_env(speech_stack, fake_llm, fake_twilio, fake_webhook, tmp_path: Path) -> dict[str, str]:
    return {
        **upstream_env(speech_stack, fake_llm, fake_twilio, fake_webhook, tmp_path),
        "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'switchboard.db'}",
        "GATEWAY_EXTRACTION_ENABLED": "false",
        "GATEWAY_OUTBOX_POLL_INTERVAL_S": "0.2",
        "GATEWAY_HEARTBEAT_TTL_S": "2",
        "GATEWAY_ORPHAN_SWEEP_INTERVAL_S": "0.5",
    }


def db_status(env: dict[str, str], call_sid: str) -> str | None:
    url = env["GATEWAY_DATABASE_URL"].replace("sqlite+aiosqlite", "sqlite")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT status FROM calls WHERE call_sid = :sid"), {"sid": call_sid}).first()
    finally:
        engine.dispose()
    return None if row is None else str(row[0])


async def wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what}"
        await asyncio.sleep(0.1)


def test_sigterm_mid_call_stops_within_10s_with_the_call_finished(
    process_env, fake_llm, fake_webhook: FakeWebhook, speak, tmp_path: Path
) -> None:
    """A 1 s drain (the call outlasts it), then the shutdown: the call's stream closes, no other
    gateway resumes it within the 1 s resume wait, so this one finishes it (tests/component/test_fleet.py
    has the drain that outlasts its calls)."""
    env = {**process_env, "GATEWAY_FLEET__DRAIN_TIMEOUT_S": "1", "GATEWAY_FLEET__RESUME_WAIT_S": "1"}
    gw = GatewayProcess(env, tmp_path / "gateway.log").start()
    fake_llm.replies[:] = [LONG_REPLY]
    problem = speak("My kitchen sink is leaking.")

    async def scenario() -> tuple[SimulatedCall, float]:
        call = SimulatedCall(gw.url, auth_token="test-token")
        await call.connect()
        await call.wait_greeting()
        call.say(problem)
        await call.wait_until(lambda: any(m.startswith("reply") for m in call.result.marks_received), 60, "reply")
        assert gw.proc is not None
        t0 = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(gw.proc.wait, 15)
        took = time.monotonic() - t0
        await call.close()
        return call, took

    try:
        call, took = asyncio.run(scenario())
    finally:
        gw.stop()
    assert took < 10.0, f"SIGTERM took {took:.1f}s\n{gw.tail()}"
    # uvicorn re-raises the signal once it has shut down cleanly: -SIGTERM, not a kill
    assert gw.proc is not None and gw.proc.returncode in (0, -signal.SIGTERM), gw.tail()
    assert "Application shutdown complete" in gw.tail()
    assert db_status(process_env, call.call_sid) == "completed", gw.tail()
    body = fake_webhook.completed(call.call_sid)
    assert body is not None and body["status"] == "completed", gw.tail()


def test_a_killed_gateways_call_is_finished_by_the_next_gateway(
    process_env, fake_webhook: FakeWebhook, speech_stack, tmp_path: Path
) -> None:
    first = GatewayProcess(process_env, tmp_path / "gateway-1.log").start()
    second = GatewayProcess(process_env, tmp_path / "gateway-2.log")

    async def scenario() -> SimulatedCall:
        call = SimulatedCall(first.url, auth_token="test-token")
        await call.connect()
        await call.wait_greeting()
        assert first.proc is not None
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(timeout=10)
        await call.close()
        assert db_status(process_env, call.call_sid) == "in-progress"
        await asyncio.to_thread(second.start)
        await wait_for(lambda: fake_webhook.completed(call.call_sid) is not None, 30, "call.completed")
        return call

    try:
        call = asyncio.run(scenario())
    finally:
        first.stop()
        second.stop()
    body = fake_webhook.completed(call.call_sid)
    assert body is not None and body["status"] == "gateway-lost", second.tail()
    assert [t.get("reply_id", "").split("-")[0] for t in body["turns"]][:1] == ["greeting"]
    assert db_status(process_env, call.call_sid) == "gateway-lost"
    stored = redis.Redis.from_url(speech_stack.redis_url, decode_responses=True).hgetall(f"sb:call:{call.call_sid}")
    assert stored["status"] == "gateway-lost"


def test_the_gateway_caps_numpys_blas_threads(gateway) -> None:
    """Smart Turn's features are numpy matrix products: OpenBLAS's spinning threads are capped at
    ``GATEWAY_BLAS_THREADS`` (1) per gateway process (here the in-process gateway's)."""
    from threadpoolctl import threadpool_info

    gateway(blas_threads=1)
    blas = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
    assert blas and all(n == 1 for n in blas)
