"""Two models in one STT service (issue 17): English on tiny.en, Spanish (or detection) on the
multilingual Whisper base; real models, a Kokoro Spanish voice."""

from __future__ import annotations

import httpx
import numpy as np
from stt_helpers import Server, Utterance

from shared.audio import float_to_pcm16, resample
from shared.config import models_dir
from tests.speech import wer

SPANISH = "Tengo una fuga de agua debajo del fregadero de la cocina."


def spanish_pcm16() -> np.ndarray:
    from kokoro_onnx import Kokoro

    kokoro = models_dir() / "kokoro"
    tts = Kokoro(str(kokoro / "kokoro-v1.0.int8.onnx"), str(kokoro / "voices-v1.0.bin"))
    samples, rate = tts.create(SPANISH, voice="em_alex", lang="es")
    return float_to_pcm16(resample(np.asarray(samples, dtype=np.float32), int(rate), 16000))


def raw(server: Server, pcm: np.ndarray, language: str) -> dict:
    resp = httpx.post(
        server.url + "/v1/audio/transcriptions/raw",
        params={"sample_rate": 16000, "language": language},
        content=pcm.astype("<i2").tobytes(),
        timeout=120,
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_spanish_and_detection_go_to_the_multilingual_model_english_stays_on_tiny_en(
    bilingual_server: Server, arctic: Utterance
) -> None:
    pcm = spanish_pcm16()
    es = raw(bilingual_server, pcm, "es")
    assert es["language"] == "es" and wer(SPANISH, es["text"]) <= 0.3, es
    auto = raw(bilingual_server, pcm, "auto")
    assert auto["language"] == "es" and wer(SPANISH, auto["text"]) <= 0.3, auto
    english = raw(bilingual_server, float_to_pcm16(resample(arctic.audio, arctic.rate, 16000)), "en")
    assert english["language"] == "en" and wer(arctic.text, english["text"]) <= 0.25, english
    service = bilingual_server.app.state.stt
    assert not service.engine.multilingual and service.multilingual is not None
