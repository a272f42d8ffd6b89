"""The gateway's ``/ready``, ``/gpu`` and ``/logs`` against real STT, TTS and Redis processes."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from websockets.sync.client import connect

from tests.component.conftest import ADMIN_KEY
from tools.stack import free_port


def test_ready_aggregates_the_services_and_gpu_reports_their_devices(gateway, tmp_path) -> None:
    base, _app = gateway(database_enabled=True, database_url=f"sqlite+aiosqlite:///{tmp_path / 'sb.db'}")
    ready = httpx.get(f"{base}/ready", timeout=10)
    body = ready.json()
    assert ready.status_code == 200 and body["ready"] is True, body
    assert set(body["checks"]) == {"stt", "tts", "llm", "redis", "database"}
    assert all(c["ok"] and c["latency_ms"] >= 0 for c in body["checks"].values()), body
    gpu = httpx.get(f"{base}/gpu", timeout=20).json()
    assert gpu["stt"]["device"] == "cpu" and gpu["tts"]["device"] == "cpu", gpu  # this box has no GPU
    assert gpu["gateway"]["device"] == "cpu"


def test_ready_is_503_naming_the_service_that_is_down(gateway) -> None:
    base, _app = gateway(stt_url=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    ready = httpx.get(f"{base}/ready", timeout=10)
    body = ready.json()
    assert ready.status_code == 503 and body["ready"] is False
    assert not body["checks"]["stt"]["ok"] and body["checks"]["stt"]["error"]
    assert body["checks"]["tts"]["ok"] and body["checks"]["redis"]["ok"], body
    assert "error" in httpx.get(f"{base}/gpu", timeout=20).json()["stt"]


def test_logs_show_recent_events_behind_the_admin_key(gateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)  # as shared.logs.setup_logging sets it in the gateway process
    base, _app = gateway()
    assert httpx.get(f"{base}/logs").status_code == 401
    auth = {"X-Admin-Key": ADMIN_KEY}
    with connect(base.replace("http://", "ws://") + "/ws/conversation") as ws:  # one short browser call
        session = json.loads(ws.recv())["session_id"]
        ws.send(json.dumps({"type": "end_conversation"}))
        while True:
            message = ws.recv()  # the greeting's audio (binary PCM) may come before the analysis
            if isinstance(message, str) and json.loads(message)["type"] == "analysis":
                break
    items = httpx.get(f"{base}/logs", headers=auth).json()["items"]
    assert items and all({"seq", "at", "level", "logger", "message", "call"} <= set(r) for r in items)
    about = httpx.get(f"{base}/logs", headers=auth, params={"call": session}).json()["items"]
    assert any("started" in r["message"] for r in about) and all(r["call"] == session for r in about), about
    assert [r["seq"] for r in items] == sorted(r["seq"] for r in items)
    last = items[-1]["seq"]
    newer = httpx.get(f"{base}/logs", headers=auth, params={"after": last}).json()["items"]
    assert all(r["seq"] > last for r in newer)  # (this test's own client logs in this process too)
    warnings = httpx.get(f"{base}/logs", headers=auth, params={"level": "WARNING"}).json()["items"]
    assert all(r["level"] in ("WARNING", "ERROR", "CRITICAL") for r in warnings)
    assert httpx.get(f"{base}/logs", headers=auth, params={"level": "LOUD"}).status_code == 422
