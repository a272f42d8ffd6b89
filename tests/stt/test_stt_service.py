"""The STT service end to end in-process: real tiny.en model, real speech, real HTTP/WS clients."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from openai import OpenAI
from stt_helpers import Server, Utterance
from websockets.sync.client import connect

from services.stt import create_app
from services.stt.config import STTSettings
from shared.audio import float_to_pcm16, resample, ulaw_encode, wav_bytes
from tests.speech import wer


def _error(resp: httpx.Response, status: int) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    return body["error"]  # type: ignore[no-any-return]


def test_service_endpoints(server: Server) -> None:
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["ready"] is True
    ready = httpx.get(server.url + "/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    models = httpx.get(server.url + "/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == "whisper-1"
    gpu = httpx.get(server.url + "/gpu").json()
    assert gpu["device"] == "cpu" and gpu["memory_total_mib"] is None and gpu["utilization_percent"] is None
    metrics = httpx.get(server.url + "/metrics", follow_redirects=True).text
    assert "stt_batch_size_bucket" in metrics and "stt_queue_wait_seconds_bucket" in metrics


def test_openai_client_transcribes_real_recording(server: Server, arctic: Utterance) -> None:
    client = OpenAI(base_url=server.url + "/v1", api_key="unused")
    wav = arctic.wav
    text = client.audio.transcriptions.create(model="whisper-1", file=("arctic.wav", wav, "audio/wav"))
    assert wer(arctic.text, text.text) <= 0.1, text.text

    plain = client.audio.transcriptions.create(
        model="whisper-1", file=("arctic.wav", wav, "audio/wav"), response_format="text"
    )
    assert wer(arctic.text, str(plain)) <= 0.1

    verbose = client.audio.transcriptions.create(
        model="whisper-1",
        file=("arctic.wav", wav, "audio/wav"),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        language="en",
    )
    assert verbose.language == "en" and abs(verbose.duration - arctic.audio.size / arctic.rate) < 0.01
    assert verbose.segments and verbose.segments[0].end > verbose.segments[0].start
    words = verbose.words or []
    assert [w.word.lower().strip(".") for w in words][:3] == ["he", "turned", "sharply"]
    assert all(a.start <= b.start for a, b in itertools.pairwise(words))
    assert words[-1].end <= verbose.duration + 0.5


async def test_concurrent_requests_are_batched_without_crosstalk(
    server: Server, arctic: Utterance, kokoro_utterances: list[Utterance], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long window makes the concurrent requests meet in the queue on a loaded 2-core box.
    monkeypatch.setattr(server.app.state.stt.scheduler, "window_s", 1.0)
    before_count = server.metric("stt_batch_size_count")
    before_single = server.metric("stt_batch_size_bucket", {"le": "1.0"})
    utterances = [arctic, *kokoro_utterances] * 2

    async def one(i: int, u: Utterance, client: httpx.AsyncClient) -> str:
        if i % 2:  # the gateway's hot path: raw PCM16 at the source rate
            resp = await client.post(
                "/v1/audio/transcriptions/raw",
                params={"sample_rate": u.rate, "language": "en"},
                content=u.pcm16(),
                headers={"Content-Type": "application/octet-stream"},
            )
        else:
            files = {"file": ("u.wav", u.wav, "audio/wav")}
            resp = await client.post("/v1/audio/transcriptions", files=files, data={"response_format": "json"})
        assert resp.status_code == 200, resp.text
        return str(resp.json()["text"])

    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        texts = await asyncio.gather(*(one(i, u, client) for i, u in enumerate(utterances)))

    references = {u.text for u in utterances}
    for u, text in zip(utterances, texts, strict=True):
        own = wer(u.text, text)
        assert own <= 0.2, (u.name, text)
        assert all(own < wer(other, text) for other in references - {u.text}), (u.name, text)
    batches = server.metric("stt_batch_size_count") - before_count
    multi = batches - (server.metric("stt_batch_size_bucket", {"le": "1.0"}) - before_single)
    assert batches >= 1 and multi >= 1, f"{batches} batches, none larger than 1"


def test_telephone_mulaw_inputs(server: Server, arctic: Utterance) -> None:
    ulaw = ulaw_encode(float_to_pcm16(resample(arctic.audio, arctic.rate, 8000)))
    by_type = httpx.post(server.url + "/v1/audio/transcriptions", files={"file": ("a.ul", ulaw, "audio/basic")})
    by_field = httpx.post(
        server.url + "/v1/audio/transcriptions",
        files={"file": ("a.raw", ulaw, "application/octet-stream")},
        data={"format": "mulaw", "sample_rate": "8000"},
    )
    whole_body = httpx.post(
        server.url + "/v1/audio/transcriptions", content=ulaw, headers={"Content-Type": "audio/basic"}
    )
    raw = httpx.post(
        server.url + "/v1/audio/transcriptions/raw", params={"sample_rate": 8000, "encoding": "mulaw"}, content=ulaw
    )
    for resp in (by_type, by_field, whole_body, raw):
        assert resp.status_code == 200, resp.text
        # tiny.en hears "Gregson" as "Greggs in" once the band is cut to 4 kHz: one name, ≤ 2 words.
        assert wer(arctic.text, resp.json()["text"]) <= 0.25, resp.json()


def test_long_audio_is_windowed_at_silences(server: Server, caller: Utterance) -> None:
    gap = np.zeros(caller.rate, dtype=np.float32)
    audio = np.concatenate([caller.audio, gap] * 5)  # ≈ 42 s: two 30 s windows
    resp = httpx.post(
        server.url + "/v1/audio/transcriptions",
        files={"file": ("long.wav", wav_bytes(audio, caller.rate), "audio/wav")},
        data={"response_format": "verbose_json"},
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["duration"] > 40 and max(s["end"] for s in body["segments"]) > 30
    assert body["text"].lower().count("kitchen sink") >= 4


def test_error_codes(server: Server, arctic: Utterance, monkeypatch: pytest.MonkeyPatch) -> None:
    url = server.url + "/v1/audio/transcriptions"
    assert _error(httpx.post(url, data={"model": "whisper-1"}), 400)["param"] == "file"
    junk = httpx.post(url, files={"file": ("x.wav", b"this is not audio at all" * 40, "audio/wav")})
    assert _error(junk, 415)["code"] == "unsupported_audio"
    long_ulaw = bytes([0xFF]) * (8000 * 125)  # 125 s of μ-law silence > the 120 s limit
    assert _error(httpx.post(url, files={"file": ("l.ul", long_ulaw, "audio/basic")}), 413)["code"] == "audio_too_long"
    raw = server.url + "/v1/audio/transcriptions/raw"
    assert _error(httpx.post(raw, content=b""), 400)["param"] == "body"
    assert _error(httpx.post(raw, content=b"\x00\x01\x02"), 415)["code"] == "unsupported_audio"
    assert _error(httpx.post(raw, params={"sample_rate": 8000}, content=bytes(2 * 8000 * 121)), 413)
    _error(httpx.post(raw, params={"sample_rate": 10}, content=bytes(100)), 400)

    monkeypatch.setattr(server.app.state.stt.scheduler, "max_queue", 0)
    full = httpx.post(raw, params={"sample_rate": arctic.rate}, content=Utterance.pcm16(arctic))
    assert _error(full, 503)["code"] == "queue_full"
    assert int(full.headers["Retry-After"]) >= 1


def test_client_disconnect_cancels_queued_request(
    server: Server, arctic: Utterance, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hold the queue for 5 s so the request is still queued when its client gives up.
    monkeypatch.setattr(server.app.state.stt.scheduler, "window_s", 5.0)
    cancelled = server.metric("stt_queue_cancelled_total")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            server.url + "/v1/audio/transcriptions/raw",
            params={"sample_rate": arctic.rate},
            content=arctic.pcm16(),
            timeout=httpx.Timeout(10, read=0.5),
        )
    deadline = time.monotonic() + 5
    while server.metric("stt_queue_cancelled_total") == cancelled and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.metric("stt_queue_cancelled_total") == cancelled + 1
    assert server.app.state.stt.scheduler.depth == 0


def test_streaming_partials_then_final(server: Server, caller: Utterance) -> None:
    ws_url = server.url.replace("http", "ws") + f"/v1/audio/stream?sample_rate={caller.rate}&interval_ms=1500"
    pcm = caller.pcm16()
    step = caller.rate // 4 * 2  # 250 ms of PCM16
    messages = []
    with connect(ws_url, open_timeout=10) as ws:
        for i in range(0, len(pcm), step):
            ws.send(pcm[i : i + step])
        ws.send(json.dumps({"type": "end"}))
        for raw in ws:
            messages.append(json.loads(raw))
    kinds = [m["type"] for m in messages]
    assert "partial" in kinds and kinds[-1] == "final", kinds
    assert kinds.index("partial") < kinds.index("final")
    final = messages[-1]
    assert abs(final["audio_seconds"] - caller.audio.size / caller.rate) < 0.05
    assert wer(caller.text, final["text"]) <= 0.15, final["text"]


def test_missing_model_refuses_to_start(tmp_path: Path) -> None:
    app = create_app(STTSettings(port=1, model=str(tmp_path) + "/no-such-model"))
    with pytest.raises(FileNotFoundError, match="make models"), TestClient(app):
        pass


def test_the_service_caps_numpys_blas_threads() -> None:
    """OpenBLAS's own threads spin between the service's many small feature extractions: the service
    runs with ``STT_BLAS_THREADS`` (1) of them, whatever the host's core count. (In a fresh
    interpreter: OpenBLAS ignores a limit set from another thread once the main thread set one.)"""
    code = (
        "import json\n"
        "from threadpoolctl import threadpool_info as info\n"
        "from fastapi.testclient import TestClient\n"
        "from services.stt import create_app\n"
        "from services.stt.config import STTSettings\n"
        "blas = lambda: [i['num_threads'] for i in info() if i['user_api'] == 'blas']\n"
        "before = blas()\n"
        "with TestClient(create_app(STTSettings(warmup=False))):\n"
        "    print(json.dumps([before, blas()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    before, during = json.loads(out.stdout.strip().splitlines()[-1])
    assert max(before) == min(os.cpu_count() or 1, 64)  # OpenBLAS's default: a thread per core
    assert during == [1] * len(during)
