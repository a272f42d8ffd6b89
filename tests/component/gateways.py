"""Gateways as processes (``python -m gateway``) for the tests that signal or kill them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from shared.config import PROJECT_ROOT
from tools.stack import free_port, http_healthy


def upstream_env(
    speech_stack: Any, fake_llm: Any, fake_twilio: Any, fake_webhook: Any, data_dir: Path
) -> dict[str, str]:
    """A gateway process's environment for the component fixtures: the real STT and TTS of
    ``speech_stack``, Redis, the fake LLM, Twilio REST API and webhook receiver, data in ``data_dir``."""
    p = speech_stack.ports
    return {
        "GATEWAY_STT_URL": f"http://127.0.0.1:{p.stt}",
        "GATEWAY_TTS_URL": f"http://127.0.0.1:{p.tts}",
        "GATEWAY_LLM_URL": fake_llm.url + "/v1",
        "GATEWAY_REDIS_URL": speech_stack.redis_url,
        "GATEWAY_TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "GATEWAY_TWILIO_AUTH_TOKEN": "test-token",
        "GATEWAY_TWILIO_API_BASE_URL": fake_twilio.url,
        "GATEWAY_WEBHOOK_URL": fake_webhook.url,
        "GATEWAY_DATA_DIR": str(data_dir),
    }


class GatewayProcess:
    """``python -m gateway`` on a free port, logging to a file.

    ``advertise``: register ``http://127.0.0.1:<port>`` in the gateway registry
    (``GATEWAY_FLEET__ADVERTISE_URL``), so the other gateways send it calls.
    """

    def __init__(self, env: dict[str, str], log: Path, advertise: bool = False) -> None:
        self.port = free_port()
        self.log = log
        self.env = {**os.environ, **env, "GATEWAY_PORT": str(self.port), "PYTHONUNBUFFERED": "1"}
        if advertise:
            self.env["GATEWAY_FLEET__ADVERTISE_URL"] = self.url
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GatewayProcess:
        """Launch it and wait until it is healthy."""
        return self.launch().wait_healthy()

    def launch(self) -> GatewayProcess:
        """Start the process (not waiting for it)."""
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway"], cwd=PROJECT_ROOT, env=self.env, stdout=fh, stderr=subprocess.STDOUT
            )
        return self

    def wait_healthy(self) -> GatewayProcess:
        """Wait (120 s at most) for ``GET /health``."""
        assert self.proc is not None
        deadline = time.monotonic() + 120
        while not http_healthy(self.port):
            assert self.proc.poll() is None, f"gateway died:\n{self.tail()}"
            assert time.monotonic() < deadline, f"gateway did not start:\n{self.tail()}"
            time.sleep(0.2)
        return self

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
