"""Component fixtures: real Redis + STT + TTS processes, scripted LLM and Twilio REST fakes,
and the gateway running in-process (so tests can inspect and poke its live state)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from gateway.app import create_app
from gateway.config import GatewaySettings
from shared.audio import TELEPHONY_RATE_HZ, resample, split_frames, ulaw_encode
from tests.component.fakes import FakeLLM, FakeTwilioREST, FakeWebhook, ServerThread
from tools.stack import Ports, Stack

SILENCE_FRAME = b"\xff" * 160


@pytest.fixture(scope="session")
def speech_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("component-logs")
    stack = Stack(Ports.free(), reuse=False, log_dir=logs, only={"redis", "stt", "tts"})
    try:
        stack.start(timeout_s=240)
    except RuntimeError as exc:
        pytest.fail(f"speech services did not start: {exc}")
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeLLM]:
    llm = FakeLLM()
    with ServerThread(llm.app) as server:
        llm.url = server.url  # type: ignore[attr-defined]
        yield llm


@pytest.fixture(scope="session")
def fake_twilio() -> Iterator[FakeTwilioREST]:
    fake = FakeTwilioREST()
    with ServerThread(fake.app) as server:
        fake.url = server.url  # type: ignore[attr-defined]
        yield fake


@pytest.fixture(scope="session")
def fake_webhook() -> Iterator[FakeWebhook]:
    hook = FakeWebhook()
    with ServerThread(hook.app) as server:
        hook.url = server.url + "/webhook"  # type: ignore[attr-defined]
        yield hook


ADMIN_KEY = "component-admin-key-0123456789"


@pytest.fixture
def gateway(speech_stack: Stack, fake_llm: FakeLLM, fake_twilio: FakeTwilioREST, tmp_path):
    """Factory: start an in-process gateway with setting overrides; returns (base URL, app)."""
    servers: list[ServerThread] = []
    fake_llm.requests.clear()
    fake_llm.prewarms.clear()
    fake_llm.replies.clear()
    fake_llm.completions.clear()
    fake_twilio.updates.clear()

    def start(**overrides: Any) -> tuple[str, Any]:
        p = speech_stack.ports
        values: dict[str, Any] = {
            "port": 0,
            "stt_url": f"http://127.0.0.1:{p.stt}",
            "tts_url": f"http://127.0.0.1:{p.tts}",
            "llm_url": fake_llm.url + "/v1",  # type: ignore[attr-defined]
            "redis_url": speech_stack.redis_url,
            "twilio_account_sid": "AC" + "0" * 32,
            "twilio_auth_token": "test-token",
            "twilio_api_base_url": fake_twilio.url,  # type: ignore[attr-defined]
            "webhook_url": None,
            "data_dir": str(tmp_path),
            "database_enabled": False,
            "reprompt_after_s": 60,
            "hangup_after_s": 120,
            "admin_api_key": ADMIN_KEY,
        }
        values.update(overrides)
        settings = GatewaySettings(**values)  # flat names are folded into their groups
        app = create_app(settings)
        server = ServerThread(app).__enter__()
        servers.append(server)
        return server.url, app

    yield start
    for server in servers:
        server.__exit__()


@pytest.fixture(scope="session")
def speak(speech_stack: Stack) -> Callable[[str], list[bytes]]:
    """Text → the caller's 20 ms μ-law frames (Kokoro voice am_michael, resampled to 8 kHz)."""
    cache: dict[str, list[bytes]] = {}

    def frames(text: str) -> list[bytes]:
        if text not in cache:
            resp = httpx.post(
                f"http://127.0.0.1:{speech_stack.ports.tts}/v1/audio/speech",
                json={"input": text, "voice": "am_michael", "response_format": "pcm"},
                timeout=120,
            )
            resp.raise_for_status()
            pcm = np.frombuffer(resp.content, dtype="<i2").astype(np.int16)
            cache[text] = split_frames(ulaw_encode(resample(pcm, 24000, TELEPHONY_RATE_HZ)))
        return cache[text]

    return frames


def silence(ms: int) -> list[bytes]:
    """μ-law silence frames lasting ``ms``."""
    return [SILENCE_FRAME] * (ms // 20)
