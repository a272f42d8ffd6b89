"""The phrase cache: a repeated segment is answered from RAM, not synthesised again (issue 13).

Unit tests of the LRU over fake jobs, then the real Kokoro engine behind the streaming WebSocket:
the second "Sure," of a connection costs no model pass and is the same audio."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from websockets.sync.client import connect

from services.tts.phrase_cache import PhraseCache
from services.tts.scheduler import Scheduler


@dataclass(frozen=True)
class Job:
    text: str


def _cache(max_bytes: int, max_chars: int = 10) -> PhraseCache[Job]:
    return PhraseCache(lambda j: j if len(j.text) <= max_chars else None, max_bytes)


def test_hits_misses_and_long_segments_are_not_kept() -> None:
    cache = _cache(1 << 20)
    audio = np.ones(100, dtype=np.float32)
    assert cache.get(Job("Sure,")) is None
    cache.put(Job("Sure,"), audio)
    hit = cache.get(Job("Sure,"))
    assert hit is audio and not hit.flags.writeable  # handed out read-only
    cache.put(Job("a sentence far too long to keep"), np.ones(10, dtype=np.float32))
    assert cache.get(Job("a sentence far too long to keep")) is None
    assert (cache.hits, cache.misses, len(cache)) == (1, 1, 1)  # the long one is not even counted


def test_least_recently_used_entries_go_first_once_over_the_byte_bound() -> None:
    cache = _cache(3 * 400)  # room for three 100-sample float32 arrays
    for name in "abc":
        cache.put(Job(name), np.zeros(100, dtype=np.float32))
    assert cache.get(Job("a")) is not None  # "a" is now the most recent
    cache.put(Job("d"), np.zeros(100, dtype=np.float32))
    assert cache.get(Job("b")) is None and cache.get(Job("a")) is not None
    assert cache.bytes == 1200 and len(cache) == 3


def test_off_when_zero_bytes() -> None:
    cache = _cache(0)
    cache.put(Job("x"), np.zeros(4, dtype=np.float32))
    assert cache.get(Job("x")) is None and len(cache) == 0


async def test_scheduler_answers_a_cached_job_at_once_without_a_queue_slot() -> None:
    calls: list[list[Job]] = []

    def run_batch(jobs: list[Job]) -> list[np.ndarray]:
        calls.append(jobs)
        return [np.full(8, len(j.text), dtype=np.float32) for j in jobs]

    scheduler: Scheduler[Job, np.ndarray] = Scheduler(run_batch, max_queue=1, cache=_cache(1 << 20))
    scheduler.start()
    try:
        first = await scheduler.run(Job("Okay."))
        blocker = scheduler.submit(Job("other"))  # the queue's one slot is taken...
        second = scheduler.submit(Job("Okay."))  # ...yet the cached job is answered
        assert second.done() and second.result() is first
        await blocker
        assert calls == [[Job("Okay.")], [Job("other")]]
    finally:
        await scheduler.stop()


def _speak(ws: Any, text: str) -> list[dict[str, Any]]:
    ws.send(json.dumps({"type": "text", "text": text}))
    ws.send(json.dumps({"type": "flush"}))
    out = []
    while True:
        msg = json.loads(ws.recv(timeout=60))
        if msg["type"] == "flushed":
            return out
        assert msg["type"] == "audio", msg
        out.append(msg)


def test_a_repeated_opener_is_served_from_the_cache_with_the_same_audio(tts_server: Any) -> None:
    engine = tts_server.app.state.engine
    opener = "Sure, I can help you with that today."
    with connect(f"{tts_server.ws_url}/v1/audio/speech/stream?format=mulaw&sample_rate=8000") as ws:
        json.loads(ws.recv(timeout=30))  # ready
        first = _speak(ws, opener)
        done, hits = engine.segments_completed, engine.phrase_cache.hits
        second = _speak(ws, opener)
    assert [m["text"] for m in first] == [m["text"] for m in second] == ["Sure,", "I can help you with that today."]
    assert engine.segments_completed == done  # no model pass the second time
    assert engine.phrase_cache.hits == hits + 2
    assert [base64.b64decode(m["audio"]) for m in first] == [base64.b64decode(m["audio"]) for m in second]
    assert len(base64.b64decode(first[0]["audio"])) > 1600  # "Sure," is real speech, > 0.2 s at 8 kHz


def test_segments_over_the_length_bound_are_synthesised_every_time(tts_server: Any) -> None:
    engine = tts_server.app.state.engine
    text = (
        "Our plumber can come out tomorrow morning between eight and ten to look at the leak under "
        "your kitchen sink and fix it for you."
    )
    assert len(text) > engine.settings.phrase_cache_max_chars
    before = engine.segments_completed
    for _ in range(2):
        r = httpx.post(f"{tts_server.url}/v1/audio/speech", json={"input": text, "response_format": "pcm"}, timeout=60)
        assert r.status_code == 200 and len(r.content) > 24000, r.text
    assert engine.segments_completed == before + 2
