"""The capacity benchmark's arithmetic and its calibrated LLM stand-in (no models, seconds)."""

from __future__ import annotations

import asyncio
import json

import pytest

from bench.llm_standin import Calibration, Engine, Replies, create_app, tokenize
from bench.load import CallOutcome
from bench.report import capacity_at, summarize
from gateway.upstream.llm import LLMClient
from tests.component.fakes import ServerThread


def level(calls: int, p95: float | None, error_rate: float = 0.0) -> dict:
    return {"calls": calls, "respond_ms": {"p95": p95}, "error_rate": error_rate}


def test_capacity_is_the_last_level_before_the_first_miss():
    levels = [level(1, 200), level(5, 280), level(10, 310), level(20, 250)]
    assert capacity_at(levels, 300) == 5  # a lucky level after a miss does not count
    assert capacity_at(levels, 400) == 20
    assert capacity_at([level(1, 350)], 300) == 0
    assert capacity_at([level(1, 100), level(2, 120, error_rate=0.05)], 300) == 1


def reply(v2v: float, endpointing: float, stt: float = 50) -> dict:
    latency = {"voice_to_voice_ms": v2v, "endpointing_ms": endpointing, "stt_ms": stt}
    return {"role": "assistant", "reply_id": "reply-2", "latency_ms": latency}


def test_summarize_takes_response_latency_from_the_gateway_records():
    ok = CallOutcome(0, "http://gw", call_sid="CA1", duration_s=60, caller_v2v_ms=[700, 900], barge_in_ms=1300)
    ok.turns = [
        {"role": "assistant", "reply_id": "greeting-1", "latency_ms": {}},
        {"role": "user", "text": "hi"},
        reply(500, 250),
        reply(800, 300),
    ]
    failed = CallOutcome(1, "http://gw", call_sid="CA2", duration_s=60, error="TimeoutError: no reply")
    failed.turns = [{"role": "assistant", "reply_id": "apology-3", "latency_ms": {}}]
    lv = summarize(2, [ok, failed], gateway_cpu_s=30.0, wall_s=70.0, target_ms=1000)
    assert lv["replies"] == 2 and lv["failed_calls"] == 1 and lv["apologies"] == 1
    assert lv["respond_ms"]["n"] == 2 and lv["respond_ms"]["p50"] == pytest.approx(375)
    assert lv["stages_ms"]["voice_to_voice"]["p95"] == pytest.approx(785)
    assert lv["barge_in_ms"]["n"] == 1
    assert lv["gateway_cpu_s_per_call_minute"] == pytest.approx(15.0)
    assert lv["error_rate"] == pytest.approx(2 / 3)  # 2 errors over 2 + 1 expected turns
    assert not lv["meets_target"]  # latency fine, errors not


def test_calibration_interpolates_and_extrapolates_linearly():
    cal = Calibration([16, 1024], [10, 20], [1, 64], [3, 9], "test")
    assert cal.prefill(520) == pytest.approx(0.015)
    assert cal.prefill(2048) == pytest.approx(0.040)  # past the table: proportional
    assert cal.decode(1) == pytest.approx(0.003)
    assert cal.decode(128) == pytest.approx(0.018)


def test_tokenize_keeps_every_character():
    text = "Yes, we can book a plumber for today. It's $150 to $300!"
    assert "".join(tokenize(text)) == text
    assert len(tokenize(text)) >= 15


def test_engine_prefills_new_requests_together_then_decodes_the_batch():
    async def scenario() -> tuple[list[str], list[str], int]:
        engine = Engine(Calibration([1, 1000], [1, 1], [1, 8], [1, 1], "test"))
        task = asyncio.create_task(engine.run())
        a = engine.submit(100, ["a", "b", "c"])
        b = engine.submit(100, ["x"])
        got_a = [t async for t in _drain(a.queue)]
        got_b = [t async for t in _drain(b.queue)]
        task.cancel()
        return got_a, got_b, engine.steps

    got_a, got_b, steps = asyncio.run(scenario())
    assert got_a == ["a", "b", "c"] and got_b == ["x"]
    assert steps == 3  # one shared prefill (first tokens), then two decode steps for "a"


async def _drain(queue: asyncio.Queue):
    while (tok := await queue.get()) is not None:
        yield tok


def test_the_gateway_llm_client_streams_a_recorded_reply_from_the_stand_in(tmp_path):
    replies_path = tmp_path / "replies.json"
    replies_path.write_text(
        json.dumps(
            {
                "model": "qwen2.5-0.5b-instruct",
                "replies": [
                    {"user": "How much does a repair cost?", "reply": "A repair costs 150 dollars."},
                    {"user": "Can somebody come today?", "reply": "Yes, we can come today."},
                ],
            }
        )
    )
    cal = Calibration([1, 1000], [2, 2], [1, 8], [1, 1], "test")
    with ServerThread(create_app(cal, Replies(replies_path))) as server:

        async def ask() -> str:
            client = LLMClient(server.url + "/v1", "qwen2.5-0.5b-instruct")
            return "".join([d async for d in client.stream([{"role": "user", "content": "what does it cost?"}])])

        assert asyncio.run(ask()) == "A repair costs 150 dollars."


def test_free_ports_avoid_the_kernels_ephemeral_range_and_repeats():
    from tools.stack import _ephemeral_range, free_port

    low, _ = _ephemeral_range()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(10_000 <= p < low for p in ports)
