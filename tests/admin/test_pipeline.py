"""POST /v1/pipeline with the real STT, LLM and TTS services: audio in → transcript, corrected
transcript (the called number's agent's corrections), reply text and reply audio out."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf
from admin_support import ADMIN_KEY, AGENT, gateway_settings
from dbtest_support import Process
from fastapi.testclient import TestClient

from gateway.app import create_app

pytestmark = pytest.mark.timeout(300)
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def client(services: dict[str, Process], tmp_path: Path) -> Iterator[TestClient]:
    settings = gateway_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'p.db'}",
        tmp_path,
        stt_url=f"http://127.0.0.1:{services['stt'].port}",
        tts_url=f"http://127.0.0.1:{services['tts'].port}",
        llm_url=f"http://127.0.0.1:{services['llm'].port}/v1",
        llm_timeout_s=180.0,
        stt_timeout_s=120.0,
        tts_timeout_s=120.0,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def test_pipeline_runs_the_whole_chain_with_the_agents_corrections(
    client: TestClient, arctic_wav: Path, arctic_text: str
) -> None:
    agent = client.post("/api/agents", json={**AGENT, "voice": "bf_emma"}, headers=AUTH).json()
    client.post("/api/numbers", json={"number": "+15550100002", "agent_id": agent["id"]}, headers=AUTH)
    # tiny.en hears the name "Gregson" as "Greggs in": the agent's regex rule puts it right.
    rule = {"pattern": r"greg+s?\s*[io]n", "replacement": "GREGSON", "is_regex": True, "agent_id": agent["id"]}
    assert client.post("/api/corrections", json=rule, headers=AUTH).status_code == 201
    with arctic_wav.open("rb") as fh:
        resp = client.post("/v1/pipeline", files={"file": ("a.wav", fh, "audio/wav")}, data={"to": "+15550100002"},
                           headers=AUTH)  # fmt: skip
    assert resp.status_code == 200, resp.text
    out = resp.json()
    normalize = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.Strip(),
                               jiwer.ReduceToListOfListOfWords()])  # fmt: skip
    wer = jiwer.wer(arctic_text, out["transcript"], reference_transform=normalize, hypothesis_transform=normalize)
    assert wer <= 0.25, out["transcript"]
    assert "GREGSON" in out["corrected_transcript"] and "GREGSON" not in out["transcript"], out
    assert out["agent"] == "Acme Plumbing" and out["voice"] == "bf_emma"
    assert len(out["reply_text"].split()) >= 2
    audio, rate = sf.read(io.BytesIO(base64.b64decode(out["reply_audio"])), dtype="int16")
    assert rate == out["reply_sample_rate"] and audio.ndim == 1
    assert audio.size / rate > 0.5 and np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 300  # speech, not silence
    assert set(out["latency_ms"]) == {"stt", "llm", "tts"}


def test_pipeline_rejects_what_is_not_audio(client: TestClient) -> None:
    """Errors come OpenAI-shaped, as the services' do: ``{"error": {message, type, param, code}}``."""
    resp = client.post("/v1/pipeline", files={"file": ("x.wav", b"not audio at all", "audio/wav")}, headers=AUTH)
    assert resp.status_code == 415, resp.text
    error = resp.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", "file", "unsupported_audio")
    assert "audio" in error["message"]
    missing = client.post("/v1/pipeline", headers=AUTH)  # no file
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "file", missing.text
    silence = io.BytesIO()
    sf.write(silence, np.zeros(16000, dtype=np.int16), 16000, format="WAV")
    resp = client.post("/v1/pipeline", files={"file": ("s.wav", silence.getvalue(), "audio/wav")}, headers=AUTH)
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "no_speech", resp.text
    assert "no speech" in resp.json()["error"]["message"]
    unauthorized = client.post("/v1/pipeline", files={"file": ("s.wav", silence.getvalue(), "audio/wav")})
    assert unauthorized.status_code == 401 and unauthorized.json()["error"]["code"] == "invalid_api_key"
    assert unauthorized.headers["www-authenticate"].startswith("Bearer")
