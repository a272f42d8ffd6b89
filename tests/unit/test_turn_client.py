"""The gateway's client of ``POST /v1/turn``: what it sends, and how a failed check degrades to 0.0."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from gateway.metrics import ERRORS
from gateway.upstream.turn import RemoteTurnDetector
from shared.errors import UpstreamError
from shared.smart_turn import WINDOW_SAMPLES


def _client(transport: httpx.MockTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport)


async def test_only_the_last_8_s_travel_as_raw_pcm16() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"probability": 0.75})

    utterance = (np.arange(12 * 16000) % 30000).astype(np.int16)  # 12 s
    async with _client(httpx.MockTransport(answer)) as http:
        detector = RemoteTurnDetector(http, "http://stt:8001/", timeout_s=1.0)
        assert await detector.probability(utterance) == pytest.approx(0.75)
        assert await detector.probability(utterance[:8000]) == pytest.approx(0.75)  # 0.5 s: sent whole
    first, short = seen
    assert str(first.url) == "http://stt:8001/v1/turn"
    assert first.headers["content-type"] == "application/octet-stream"
    assert len(first.content) == 2 * WINDOW_SAMPLES
    assert np.array_equal(np.frombuffer(first.content, "<i2"), utterance[-WINDOW_SAMPLES:])
    assert np.array_equal(np.frombuffer(short.content, "<i2"), utterance[:8000])
    assert detector.failures == 0


def _refusing(request: httpx.Request) -> httpx.Response:
    return httpx.Response(503, json={"error": {"message": "the Smart Turn model is missing", "type": "server_error"}})


def _unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def _garbled(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text="not json")


async def _slow(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(5)
    return httpx.Response(200, json={"probability": 1.0})


@pytest.mark.parametrize(
    ("handler", "retryable"),
    [(_refusing, True), (_unreachable, True), (_garbled, False), (_slow, True)],
    ids=["503", "unreachable", "garbled", "timeout"],
)
async def test_a_failed_check_raises_typed_and_probability_degrades_to_zero(
    handler: Callable[[httpx.Request], Any], retryable: bool
) -> None:
    before = ERRORS.labels("smart_turn")._value.get()
    pcm = np.ones(16000, np.int16)
    async with _client(httpx.MockTransport(handler)) as http:
        detector = RemoteTurnDetector(http, "http://stt:8001", timeout_s=0.05)
        with pytest.raises(UpstreamError) as err:
            await detector.check(pcm)
        assert err.value.service == "stt" and err.value.retryable is retryable
        assert await detector.probability(pcm) == 0.0  # "not done": the max-silence bound ends the turn
    assert detector.failures == 1
    assert ERRORS.labels("smart_turn")._value.get() == before + 1


async def test_an_outage_is_counted_every_time_but_warned_about_once_a_second(caplog: pytest.LogCaptureFixture) -> None:
    async with _client(httpx.MockTransport(_unreachable)) as http:
        detector = RemoteTurnDetector(http, "http://stt:8001", timeout_s=0.5)
        with caplog.at_level(logging.WARNING, logger="gateway.upstream.turn"):
            probs = [await detector.probability(np.ones(1600, np.int16)) for _ in range(5)]
    assert probs == [0.0] * 5 and detector.failures == 5
    warnings = [r for r in caplog.records if r.name == "gateway.upstream.turn"]
    assert 1 <= len(warnings) < 5  # five failures inside a second or two: not five warnings
    assert "max-silence" in warnings[0].getMessage()
