"""TTS service with the real Kokoro model: round trips through STT, streaming order, μ-law, cancel,
the official ``openai`` client, and OpenAI-shaped errors. No timing assertions: ordering is read from
the engine's count of finished segments."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
import soxr
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from shared.audio import ulaw_decode

pytestmark = pytest.mark.timeout(120)


def canonical(text: str) -> list[str]:
    """Lower-case words with digit groups joined ("555-123-4567" → "5551234567", "3:30pm" → "330 pm")."""
    text = text.lower().replace("a.m.", "am").replace("p.m.", "pm")
    text = re.sub(r"(?<=\d)[-:.,\s](?=\d)", "", text)
    text = re.sub(r"(?<=\d)(?=[a-z])|(?<=[a-z])(?=\d)", " ", text)
    return re.findall(r"[a-z0-9']+", text)


def transcribe(whisper: Any, audio: np.ndarray, rate: int) -> str:
    audio16 = soxr.resample(audio.astype(np.float32), rate, 16000)
    segments, _ = whisper.transcribe(audio16, language="en", beam_size=1, vad_filter=False)
    return " ".join(s.text.strip() for s in segments)


def _metric(served: Any, name: str, labels: dict[str, str]) -> float:
    """Sum of the ``name`` samples matching ``labels`` on ``GET /metrics``."""
    text = httpx.get(f"{served.url}/metrics", timeout=10, follow_redirects=True).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def wait_idle(served: Any) -> None:
    """Wait until the scheduler has nothing running or queued (bounded)."""
    sched = served.app.state.engine.scheduler
    for _ in range(600):
        if sched.inflight == 0 and sched.depth == 0:
            return
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("sentence", "voice"),
    [
        ("Please call us back at 555-123-4567.", "af_heart"),
        ("Your appointment is at 3:30 pm on Tuesday.", "am_michael"),
    ],
)
def test_round_trip_through_stt(tts_server: Any, whisper: Any, sentence: str, voice: str) -> None:
    r = httpx.post(
        f"{tts_server.url}/v1/audio/speech",
        json={"input": sentence, "voice": voice, "response_format": "wav"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    audio, rate = sf.read(io.BytesIO(r.content), dtype="float32")
    assert rate == 24000
    assert canonical(transcribe(whisper, audio, rate)) == canonical(sentence)


def test_pcm_default_keeps_gateway_contract(tts_server: Any) -> None:
    r = httpx.post(
        f"{tts_server.url}/v1/audio/speech",
        json={"input": "Hello.", "voice": "af_heart", "response_format": "pcm"},
        timeout=60,
    )
    assert r.status_code == 200
    assert r.headers["x-sample-rate"] == "24000"
    assert len(r.content) % 2 == 0 and len(r.content) > 24000 // 4  # PCM16, at least ~0.1 s


def test_streaming_first_chunk_arrives_before_synthesis_finishes(tts_server: Any) -> None:
    engine = tts_server.app.state.engine
    wait_idle(tts_server)
    text = "Thank you for calling. We are open today. Please hold on. Someone will be right with you."
    before = engine.segments_completed
    done_at_first_chunk = None
    size = 0
    with httpx.stream(
        "POST",
        f"{tts_server.url}/v1/audio/speech",
        timeout=120,
        json={"input": text, "voice": "af_heart", "response_format": "pcm"},
    ) as resp:
        assert resp.status_code == 200
        for chunk in resp.iter_raw():
            if chunk and done_at_first_chunk is None:
                done_at_first_chunk = engine.segments_completed - before
            size += len(chunk)
    total = engine.segments_completed - before
    assert total == 4  # four sentences, one segment each
    assert done_at_first_chunk is not None and done_at_first_chunk < total
    assert size > 0


def test_client_disconnect_cancels_synthesis(tts_server: Any) -> None:
    engine = tts_server.app.state.engine
    wait_idle(tts_server)
    text = "One moment please. I am looking that up. It may take a while. Thanks for waiting. Almost done now."
    before = engine.segments_completed
    with httpx.stream(
        "POST",
        f"{tts_server.url}/v1/audio/speech",
        timeout=120,
        json={"input": text, "voice": "af_heart", "response_format": "pcm"},
    ) as resp:
        next(resp.iter_raw())  # first sentence arrived; now hang up
    time.sleep(0.3)
    wait_idle(tts_server)
    assert engine.segments_completed - before < 5


def test_client_disconnect_cancels_a_whole_file_synthesis(tts_server: Any) -> None:
    # flac is encoded whole, so nothing is streamed: only shared.disconnect notices the hang-up
    engine = tts_server.app.state.engine
    wait_idle(tts_server)
    text = "One moment please. I am looking that up. It may take a while. Thanks for waiting. Almost done now."
    gone = _metric(tts_server, "tts_requests_total", {"endpoint": "speech", "outcome": "client_gone"})
    before = engine.segments_completed
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{tts_server.url}/v1/audio/speech",
            timeout=httpx.Timeout(30, read=0.5),
            json={"input": text, "voice": "af_heart", "response_format": "flac"},
        )
    time.sleep(0.3)
    wait_idle(tts_server)
    assert engine.segments_completed - before < 5
    assert _metric(tts_server, "tts_requests_total", {"endpoint": "speech", "outcome": "client_gone"}) == gone + 1


def test_mulaw_8k_decodes_with_expected_duration(tts_server: Any, whisper: Any) -> None:
    body = {"input": "Thanks for calling, have a nice day.", "voice": "af_heart"}
    pcm = httpx.post(f"{tts_server.url}/v1/audio/speech", json={**body, "response_format": "pcm"}, timeout=60)
    ulaw = httpx.post(f"{tts_server.url}/v1/audio/speech", json={**body, "response_format": "mulaw"}, timeout=60)
    assert ulaw.status_code == 200
    assert ulaw.headers["x-sample-rate"] == "8000"
    assert ulaw.headers["content-type"] == "audio/basic"
    seconds_24k = len(pcm.content) / 2 / 24000
    assert abs(len(ulaw.content) / 8000 - seconds_24k) < 0.005  # same speech, one byte per 8 kHz sample
    # decode with libsndfile's own G.711 decoder and with ours: same samples
    decoded, rate = sf.read(
        io.BytesIO(ulaw.content), format="RAW", subtype="ULAW", samplerate=8000, channels=1, dtype="int16"
    )
    assert rate == 8000
    assert np.array_equal(decoded, ulaw_decode(ulaw.content))
    words = canonical(transcribe(whisper, decoded.astype(np.float32) / 32768.0, 8000))
    assert words == canonical(body["input"])


def _ws_messages(ws: Any, until: str) -> list[dict[str, Any]]:
    out = []
    while True:
        msg = json.loads(ws.recv(timeout=60))
        out.append(msg)
        if msg["type"] in (until, "error"):
            return out


def test_ws_stream_tags_audio_with_text_and_flushes(tts_server: Any) -> None:
    fragments = ["Sure", ", I can", " help with that. Call", " 555-123-", "4567", " any time"]
    with connect(f"{tts_server.ws_url}/v1/audio/speech/stream?format=mulaw&voice=af_heart") as ws:
        ready = json.loads(ws.recv(timeout=30))
        assert ready == {
            "type": "ready",
            "voice": "af_heart",
            "format": "mulaw",
            "sample_rate": 8000,
            "sample_width": 1,
            "frame_ms": 20,
        }
        for f in fragments:
            ws.send(json.dumps({"type": "text", "text": f}))
        ws.send(json.dumps({"type": "flush"}))
        msgs = _ws_messages(ws, "flushed")
    audio = [m for m in msgs if m["type"] == "audio"]
    assert msgs[-1] == {"type": "flushed", "segments": len(audio)}
    # the turn's first clause is its own segment (TTS_FIRST_CLAUSE_CHARS=4): the earliest first audio
    assert [m["text"] for m in audio] == ["Sure,", "I can help with that.", "Call 555-123-4567 any time"]
    assert "five five five, one two three, four five six seven" in audio[2]["spoken"]
    assert [m["segment"] for m in audio] == [0, 1, 2]
    for m in audio:
        data = base64.b64decode(m["audio"])
        assert len(data) % 160 == 0 and len(data) == m["samples"]  # whole 20 ms Twilio frames


def test_ws_cancel_stops_the_stream(tts_server: Any) -> None:
    engine = tts_server.app.state.engine
    wait_idle(tts_server)
    before = engine.segments_completed
    text = "First sentence here. Second sentence here. Third sentence here. Fourth sentence here. "
    with connect(f"{tts_server.ws_url}/v1/audio/speech/stream") as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        ws.send(json.dumps({"type": "text", "text": text}))
        first = json.loads(ws.recv(timeout=60))
        assert first["type"] == "audio" and first["text"] == "First sentence here."
        ws.send(json.dumps({"type": "cancel"}))
        after_cancel = _ws_messages(ws, "cancelled")
        # at most the segment already being sent may precede the reply; nothing after it
        assert [m["type"] for m in after_cancel][-1] == "cancelled"
        assert sum(m["type"] == "audio" for m in after_cancel) <= 1
        assert "Fourth sentence here." in after_cancel[-1]["dropped"]
        ws.send(json.dumps({"type": "flush"}))
        assert _ws_messages(ws, "flushed") == [{"type": "flushed", "segments": 0}]
    wait_idle(tts_server)
    assert engine.segments_completed - before < 4  # the queued tail was never synthesised


def test_ws_rejects_unknown_voice(tts_server: Any) -> None:
    with connect(f"{tts_server.ws_url}/v1/audio/speech/stream?voice=nobody") as ws:
        msg = json.loads(ws.recv(timeout=30))
        assert msg["type"] == "error" and "af_heart" in msg["error"]["message"]
        with pytest.raises(Exception):  # noqa: B017 - the server closes with 1008
            ws.recv(timeout=30)
        assert ws.close_code == 1008


def test_openai_client(tts_server: Any) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{tts_server.url}/v1", api_key="unused")
    with client.audio.speech.with_streaming_response.create(
        model="kokoro",
        voice="af_heart",
        input="Hello from the open A I client.",
        response_format="pcm",
        extra_body={"sample_rate": 16000},
    ) as resp:
        assert resp.headers["x-sample-rate"] == "16000"
        data = b"".join(resp.iter_bytes())
    assert len(data) > 16000 and len(data) % 2 == 0
    wav = client.audio.speech.create(model="kokoro", voice="nova", input="Goodbye.", response_format="wav")
    audio, rate = sf.read(io.BytesIO(wav.content))
    assert rate == 24000 and audio.size > 0
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.speech.create(model="kokoro", voice="nobody", input="Hi.")
    assert "af_heart" in str(err.value)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"input": "   "}, 400, "input"),
        ({"input": "x" * 401}, 413, "input"),
        ({"input": "Hi.", "voice": "nobody"}, 400, "voice"),
        ({"input": "Hi.", "response_format": "aac"}, 400, "response_format"),
        ({"input": "Hi.", "sample_rate": 44100}, 400, "sample_rate"),
    ],
)
def test_errors_are_openai_shaped(tts_server: Any, body: dict[str, Any], status: int, param: str) -> None:
    r = httpx.post(f"{tts_server.url}/v1/audio/speech", json=body, timeout=30)
    assert r.status_code == status
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["param"] == param
    if param == "voice":
        assert "af_heart" in err["message"] and "am_michael" in err["message"]


def test_service_endpoints(tts_server: Any) -> None:
    base = tts_server.url
    assert httpx.get(f"{base}/health").json()["status"] == "ok"
    assert httpx.get(f"{base}/ready").json()["status"] == "ready"
    voices = httpx.get(f"{base}/v1/audio/voices").json()
    assert voices["default"] == "af_heart" and len(voices["voices"]) == 54
    assert httpx.get(f"{base}/gpu").json() == {
        "device": "cpu",
        "name": None,
        "memory_used_mib": None,
        "memory_total_mib": None,
        "utilization_percent": None,
        "source": None,
    }  # the same schema as the STT service's (shared.gpu.GPUInfo)
    metrics = httpx.get(f"{base}/metrics", follow_redirects=True).text
    assert "tts_time_to_first_audio_seconds" in metrics and "tts_queue_depth" in metrics
