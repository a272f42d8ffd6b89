"""Fixtures for the STT service tests: the real tiny.en model served by uvicorn on a free loopback
port (in a thread), real and Kokoro-synthesised speech."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from stt_helpers import Server, Utterance, free_port, serve

from services.stt.config import STTSettings
from shared.audio import read_audio, wav_bytes
from shared.config import models_dir

AUDIO_DIR = models_dir() / "audio"
KOKORO_DIR = models_dir() / "kokoro"
SENTENCES = {
    "af_heart": "Can I book an appointment for next Tuesday?",
    "am_michael": "The dishwasher stopped working this morning.",
    "bf_emma": "I would like to cancel my dinner reservation.",
}


def _real(name: str) -> Utterance:
    wav = (AUDIO_DIR / f"{name}.wav").read_bytes()
    audio, rate = read_audio(wav)
    return Utterance(name, audio, rate, (AUDIO_DIR / f"{name}.txt").read_text().strip(), wav)


@pytest.fixture(scope="session")
def arctic() -> Utterance:
    """Real recorded speech (CMU ARCTIC a0009, 16 kHz, 3.1 s)."""
    return _real("arctic_a0009")


@pytest.fixture(scope="session")
def caller() -> Utterance:
    """Synthetic caller (24 kHz, 7.5 s)."""
    return _real("caller_leak")


@pytest.fixture(scope="session")
def kokoro_utterances() -> list[Utterance]:
    """Three distinct short sentences, three Kokoro voices (24 kHz), synthesised once."""
    from kokoro_onnx import Kokoro

    tts = Kokoro(str(KOKORO_DIR / "kokoro-v1.0.int8.onnx"), str(KOKORO_DIR / "voices-v1.0.bin"))
    out = []
    for voice, text in SENTENCES.items():
        samples, rate = tts.create(text, voice=voice, lang="en-us" if voice[0] == "a" else "en-gb")
        audio = np.asarray(samples, dtype=np.float32)
        out.append(Utterance(voice, audio, int(rate), text, wav_bytes(audio, int(rate))))
    return out


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """The STT app on uvicorn in a thread (real tiny.en alone, int8 CPU), ready to transcribe."""
    settings = STTSettings(
        port=free_port(),
        max_batch=8,
        batch_window_ms=20,
        max_queue=64,
        cpu_threads=2,
        warmup=True,
        multilingual_model="",
    )
    yield from serve(settings)


@pytest.fixture(scope="module")
def bilingual_server() -> Iterator[Server]:
    """The STT app with tiny.en and the multilingual Whisper base beside it (the default when
    ``models/whisper-base`` is there: ``make models`` fetches it)."""
    settings = STTSettings(port=free_port(), max_batch=8, batch_window_ms=20, max_queue=64, cpu_threads=2, warmup=False)
    yield from serve(settings)
