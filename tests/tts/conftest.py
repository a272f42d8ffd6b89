"""Fixtures for the TTS tests: one real-model TTS app served by uvicorn on a free loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from services.tts import create_app
from services.tts.config import TTSSettings
from tools.stack import free_port as _free_port

WHISPER_DIR = "models/whisper-tiny.en"


@dataclass
class Served:
    """A running TTS app: its base URLs and the app (``app.state.engine`` is the real engine)."""

    url: str
    ws_url: str
    app: Any


@pytest.fixture(scope="session")
def tts_server() -> Iterator[Served]:
    """The TTS app with the real Kokoro model, under uvicorn in a thread (lifespan on)."""
    import uvicorn

    app = create_app(TTSSettings(max_input_chars=400))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "TTS server did not start"
        time.sleep(0.05)
    yield Served(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", app)
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="session")
def whisper() -> Any:
    """faster-whisper tiny.en on CPU (int8), used directly for STT round trips."""
    from faster_whisper import WhisperModel

    return WhisperModel(WHISPER_DIR, device="cpu", compute_type="int8", cpu_threads=2)
