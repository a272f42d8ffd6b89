"""TTS service edge cases (issue 11, item 8): inputs longer than the queue bound, huge numbers,
odd WebSocket frames. Where only the admission logic is under test, the Kokoro forward pass is
replaced by a fake backend (normalisation, phonemisation, segmenting and scheduling stay real)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from services.tts.engine import InferItem
from services.tts.feed import SegmentFeed
from services.tts.scheduler import Scheduler, StreamTicket
from shared.errors import QueueFullError

pytestmark = pytest.mark.timeout(120)

SENTENCES = 70
LONG_TEXT = "Hi. " * SENTENCES
"""70 one-word sentences (280 characters, under the fixture's 400-character limit): more segments
than the default queue bound of 64."""


class FakeBackend:
    """Stands in for the model pass: 0.1 s of a constant per window; records the queue depth seen."""

    name = "fake"
    device = "cpu"

    def __init__(self, scheduler: Scheduler[Any, np.ndarray]) -> None:
        self.scheduler = scheduler
        self.windows = 0
        self.max_depth = 0

    def infer(self, items: list[InferItem]) -> list[np.ndarray]:
        self.windows += len(items)
        self.max_depth = max(self.max_depth, self.scheduler.depth)
        return [np.full(2400, 0.1, dtype=np.float32) for _ in items]


@pytest.fixture
def fake_backend(tts_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBackend]:
    engine = tts_server.app.state.engine
    fake = FakeBackend(engine.scheduler)
    monkeypatch.setattr(engine, "backend", fake)
    # Admission is under test: every "Hi." must be a synthesis job, not a phrase-cache hit.
    monkeypatch.setattr(engine.phrase_cache, "max_bytes", 0)
    yield fake


def _error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err  # type: ignore[no-any-return]


@pytest.mark.parametrize("fmt", ["pcm", "flac"])  # streamed, and sent whole
def test_input_longer_than_the_queue_is_spoken_on_an_idle_server(
    tts_server: Any, fake_backend: FakeBackend, fmt: str
) -> None:
    engine = tts_server.app.state.engine
    assert SENTENCES > engine.scheduler.max_queue
    before = engine.segments_completed
    r = httpx.post(
        f"{tts_server.url}/v1/audio/speech",
        json={"input": LONG_TEXT, "voice": "af_heart", "response_format": fmt},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert engine.segments_completed - before == SENTENCES
    assert fake_backend.max_depth <= engine.lookahead  # one request never holds every slot


def test_ws_text_longer_than_the_queue_is_spoken(tts_server: Any, fake_backend: FakeBackend) -> None:
    with connect(f"{tts_server.ws_url}/v1/audio/speech/stream?format=mulaw") as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        ws.send(json.dumps({"type": "text", "text": LONG_TEXT}))
        ws.send(json.dumps({"type": "flush"}))
        msgs = []
        while not msgs or msgs[-1]["type"] != "flushed":
            msgs.append(json.loads(ws.recv(timeout=60)))
    assert [m["type"] for m in msgs] == ["audio"] * SENTENCES + ["flushed"]
    assert fake_backend.max_depth <= tts_server.app.state.engine.lookahead


def test_full_queue_is_still_503_with_retry_after(
    tts_server: Any, fake_backend: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tts_server.app.state.engine.scheduler, "max_queue", 0)  # busy: nothing fits now
    r = httpx.post(f"{tts_server.url}/v1/audio/speech", json={"input": "Hi.", "response_format": "pcm"}, timeout=30)
    assert _error(r, 503)["code"] == "overloaded" and r.headers["retry-after"] == "1"


def test_huge_number_is_spoken_not_500(tts_server: Any, fake_backend: FakeBackend) -> None:
    digits = "1" * 320  # num2words overflows from 307 digits
    r = httpx.post(
        f"{tts_server.url}/v1/audio/speech",
        json={"input": f"Your reference is {digits}.", "response_format": "pcm"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("audio/") and len(r.content) > 0


ODD_FRAMES: list[str | bytes] = [
    b"\x00\x01\x02",
    b'{"type": "flush"}',  # the right JSON, in a binary frame
    "[]",
    "42",
    "null",
    '"flush"',
    '{"type": 5}',
    '{"type": "text", "text": 5}',
    '{"type": "text"}',
    '{"type": "nope"}',
    "not json",
    "",
]
"""Frames outside the protocol: binary, JSON that is not an object, wrong types, unknown type."""


def test_ws_odd_frames_get_errors_and_the_socket_stays_open(tts_server: Any) -> None:
    with connect(f"{tts_server.ws_url}/v1/audio/speech/stream") as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        for frame in ODD_FRAMES:
            ws.send(frame)
            msg = json.loads(ws.recv(timeout=30))
            assert msg["type"] == "error" and msg["error"]["code"] == "bad_message", (frame, msg)
            assert set(msg["error"]) == {"message", "type", "param", "code"}
        ws.send(json.dumps({"type": "text", "text": "Still here."}))
        ws.send(json.dumps({"type": "flush"}))
        audio = json.loads(ws.recv(timeout=60))
        assert audio["type"] == "audio" and audio["text"] == "Still here."
        assert json.loads(ws.recv(timeout=60)) == {"type": "flushed", "segments": 1}


# The feed on its own (no model) ------------------------------------------------------------------
class Gated:
    """A ``run_batch`` that holds each batch until released and records the payloads it ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, payloads: list[str]) -> list[np.ndarray]:
        self.gate.wait(10)
        self.ran += payloads
        return [np.full(1, float(len(p)), dtype=np.float32) for p in payloads]


async def test_feed_queues_a_long_stream_in_parts_in_order() -> None:
    run = Gated()
    sched: Scheduler[str, np.ndarray] = Scheduler(run, max_queue=4)
    sched.start()
    feed = SegmentFeed(sched, lambda spoken, _pause: spoken, lookahead=3)
    items = [feed.add(f"Segment {i}.") for i in range(10)]
    feed.admit()
    assert feed.ticket.pending == 3  # the lookahead, not all ten
    peak = 0
    for item in items:
        await feed.result(item)
        peak = max(peak, feed.ticket.pending)
    await sched.stop()
    assert run.ran == [it.spoken for it in items] and len(set(run.ran)) == 10 and peak <= 3


async def test_feed_refuses_only_when_the_queue_is_full_before_it_got_in() -> None:
    run = Gated()
    run.gate.clear()
    sched: Scheduler[str, np.ndarray] = Scheduler(run, max_queue=2)
    sched.start()
    other = StreamTicket()
    running = sched.submit("running", other)
    await asyncio.sleep(0.05)  # taken by the worker, held at the gate
    queued = [sched.submit(f"queued {i}", other) for i in range(2)]
    feed = SegmentFeed(sched, lambda spoken, _pause: spoken)
    item = feed.add("Mine.")
    with pytest.raises(QueueFullError):
        feed.admit()
    assert feed.cancel() == [item]
    run.gate.set()
    await asyncio.gather(running, *queued)
    await sched.stop()
    assert "Mine." not in run.ran
