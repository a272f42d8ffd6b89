"""Helpers shared by the STT tests (no fixtures): WER, free ports, utterances, a server handle."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from services.stt import create_app
from services.stt.config import STTSettings
from tools.stack import free_port as free_port  # re-exported for the STT tests


@dataclass
class Utterance:
    """Speech with its reference transcript: float32 mono samples at ``rate`` Hz."""

    name: str
    audio: np.ndarray
    rate: int
    text: str
    wav: bytes = b""
    """The WAV file's own bytes (real recordings) or a PCM16 WAV made from ``audio``."""

    def pcm16(self) -> bytes:
        return (np.clip(self.audio, -1, 1) * 32767).astype("<i2").tobytes()


@dataclass
class Server:
    """A running STT app: its base URL and the app object (state for white-box checks)."""

    url: str
    app: FastAPI

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Sum of the samples named ``name`` (matching ``labels``) on ``GET /metrics``."""
        text = httpx.get(self.url + "/metrics", timeout=10, follow_redirects=True).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                    total += sample.value
        return total


def serve(settings: STTSettings) -> Iterator[Server]:
    """Run the STT app with ``settings`` on uvicorn in a thread; yield it once ``/ready``; stop it."""
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, name="stt-test-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    else:
        srv.should_exit = True
        pytest.fail("STT test server did not become ready in 60 s")
    yield Server(url, app)
    srv.should_exit = True
    thread.join(timeout=10)
