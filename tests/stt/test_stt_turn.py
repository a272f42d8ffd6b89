"""``POST /v1/turn`` of the real STT app with the REAL Smart Turn v3 model on real recordings:
finished sentences score above the same audio cut mid-word or mid-sentence, batched runs equal
single ones, and the errors are OpenAI-shaped (a missing model answers 503, the service still runs)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from stt_helpers import Server, Utterance, free_port, serve

from services.stt import create_app
from services.stt.config import STTSettings
from shared.audio import float_to_pcm16, resample
from shared.smart_turn import SmartTurn

PAUSE = np.zeros(3200, np.int16)
"""200 ms of silence: what the gateway's check sees after ``GATEWAY_SMART_TURN_PAUSE_MS``."""


def _pcm16k(u: Utterance) -> np.ndarray:
    audio = u.audio if u.rate == 16000 else resample(u.audio, u.rate, 16000)
    return float_to_pcm16(audio)


@pytest.fixture(scope="module")
def turn_server() -> Iterator[Server]:
    """The STT app with a wide batching window, so concurrent checks surely share a run."""
    settings = STTSettings(port=free_port(), max_batch=2, cpu_threads=1, turn_batch_wait_ms=200, turn_max_batch=8)
    yield from serve(settings)


@pytest.fixture(scope="module")
def cases(arctic: Utterance, caller: Utterance) -> dict[str, np.ndarray]:
    """Finished sentences and the same audio cut short, each followed by a 200 ms pause (int16 16 kHz).

    arctic_a0009 "He turned sharply and faced Gregson across the table." cut at 1.3 s, inside a
    word; caller_leak "… all over the floor. Can somebody come out today?" cut at 7.0 s, inside
    the question.
    """
    a, c = _pcm16k(arctic), _pcm16k(caller)
    return {
        "arctic": np.concatenate([a, PAUSE]),
        "arctic_mid_word": np.concatenate([a[: int(1.3 * 16000)], PAUSE]),
        "caller": np.concatenate([c, PAUSE]),
        "caller_mid_sentence": np.concatenate([c[: 7 * 16000], PAUSE]),
    }


def _ask(url: str, pcm16: np.ndarray) -> float:
    resp = httpx.post(
        url + "/v1/turn",
        content=pcm16.astype("<i2").tobytes(),
        headers={"content-type": "application/octet-stream"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return float(resp.json()["probability"])


def test_a_finished_sentence_scores_above_the_same_audio_cut_short(
    turn_server: Server, cases: dict[str, np.ndarray]
) -> None:
    p = {name: _ask(turn_server.url, pcm) for name, pcm in cases.items()}
    assert p["arctic"] > 0.5 > p["arctic_mid_word"], p
    # The synthetic caller's finished question scores near the 0.5 line, and where it lands depends on
    # the CPU: onnxruntime's fused int8 kernels saturate on AVX2-only CPUs (no VNNI; an AMD EPYC gave
    # 0.43 fused, 0.51 with the graph unfused) and not on others (over 0.5). The check: it scores far
    # above the same audio cut mid-sentence, which stays under 0.5 everywhere.
    assert p["caller"] > 10 * p["caller_mid_sentence"] and p["caller_mid_sentence"] < 0.5, p


def test_only_the_last_8_s_count(turn_server: Server, cases: dict[str, np.ndarray]) -> None:
    longer = np.concatenate([cases["caller"], cases["arctic"]])  # 11.6 s: the caller's part falls mostly out
    assert _ask(turn_server.url, longer) == pytest.approx(_ask(turn_server.url, longer[-8 * 16000 :]), abs=1e-6)


def test_batched_checks_equal_single_ones(turn_server: Server, cases: dict[str, np.ndarray]) -> None:
    names = list(cases) * 2
    single = {name: _ask(turn_server.url, pcm) for name, pcm in cases.items()}  # one at a time

    async def together() -> list[float]:
        async with httpx.AsyncClient(base_url=turn_server.url, timeout=30) as client:
            resps = await asyncio.gather(
                *(client.post("/v1/turn", content=cases[n].astype("<i2").tobytes()) for n in names)
            )
        return [float(r.json()["probability"]) for r in resps]

    batcher = turn_server.app.state.turn.batcher
    runs_before = len(batcher.batch_sizes)
    batched = asyncio.run(together())
    assert max(batcher.batch_sizes[runs_before:]) > 1  # they did share runs
    for name, p in zip(names, batched, strict=True):
        assert p == pytest.approx(single[name], abs=1e-4), name
    model = SmartTurn()  # and the model's own batched call, against its one-by-one call
    stacked = model.probabilities([cases[n] for n in names])
    assert stacked.dtype == np.float32 and stacked.shape == (len(names),)
    one_by_one = np.array([model.probability(cases[n]) for n in names])
    assert np.abs(stacked - one_by_one).max() < 1e-4
    assert np.abs(stacked - np.array(batched)).max() < 1e-4


def test_the_batch_metrics_are_exported(turn_server: Server, cases: dict[str, np.ndarray]) -> None:
    before = turn_server.metric("stt_turn_requests_total", {"outcome": "ok"})
    _ask(turn_server.url, cases["arctic"])
    assert turn_server.metric("stt_turn_requests_total", {"outcome": "ok"}) == before + 1
    assert turn_server.metric("stt_turn_batch_size_count") >= 1
    assert turn_server.metric("stt_turn_check_seconds_count") >= 1


@pytest.mark.parametrize(("body", "fragment"), [(b"", "empty"), (b"\x01\x02\x03", "even")])
def test_an_empty_or_odd_body_is_a_400_openai_error(turn_server: Server, body: bytes, fragment: str) -> None:
    resp = httpx.post(turn_server.url + "/v1/turn", content=body, timeout=10)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert fragment in error["message"] and error["type"] == "invalid_request_error" and error["param"] == "body"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"smart_turn_model_path": "/nonexistent/smart-turn.onnx"}, "missing"),
        ({"smart_turn_enabled": False}, "disabled"),
    ],
)
def test_without_the_model_the_endpoint_answers_503_and_the_service_runs(overrides: dict, fragment: str) -> None:
    app = create_app(STTSettings(warmup=False, cpu_threads=1, **overrides))
    with TestClient(app) as client:
        resp = client.post("/v1/turn", content=b"\x00\x00" * 1600)
        assert resp.status_code == 503
        error = resp.json()["error"]
        assert fragment in error["message"] and error["type"] == "server_error"
        assert client.get("/health").status_code == 200
