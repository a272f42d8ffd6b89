"""Shared pieces of the admin tests: the admin key, a sample agent and call, app settings, seeding."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
from dbtest_support import free_port

from gateway.after_call.runtime import DatabaseHooks
from gateway.agents.profile import CallSummary
from gateway.config import GatewaySettings
from gateway.db.engine import Database

ADMIN_KEY = "test-admin-key-5f2c9a"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
TURNS = [
    {"role": "assistant", "text": "Acme Plumbing, how can I help?", "started_at": 1.0, "ended_at": 2.0},
    {"role": "user", "text": "My kitchen sink is leaking.", "raw_text": "my kitchen sink is leaking"},
    {"role": "assistant", "text": "What is your address?"},
]
AGENT = {
    "name": "Acme Plumbing",
    "greeting": "Acme Plumbing, how can I help?",
    "system_prompt": "You are the receptionist of Acme Plumbing.\n{facts}",
    "voice": "am_michael",
    "facts": {"hours": "Mon-Fri 8-6", "prices": "call-out 89 dollars"},
    "transfer_number": "+15550100099",
    "webhook_url": "http://127.0.0.1:9/hook",
    "webhook_secret": "agent-secret-123",
}


def gateway_settings(db_url: str, data_dir: Path, **kw: Any) -> GatewaySettings:
    """Settings for a gateway on ``db_url`` with nothing else reachable (no Redis/LLM needed)."""
    values: dict[str, Any] = {
        "database_url": db_url,
        "data_dir": str(data_dir),
        "admin_api_key": ADMIN_KEY,
        "extraction_enabled": False,
        "redis_url": f"redis://127.0.0.1:{free_port()}/0",
        "llm_url": f"http://127.0.0.1:{free_port()}/v1",
        "turn_detection": "silence",
    }
    values.update(kw)
    return GatewaySettings(**values)  # flat names are folded into their groups


def seed_call(db_url: str, data_dir: Path, sid: str, to: str = "+15550100002", seconds: float = 2.0) -> np.ndarray:
    """A finished call through DatabaseHooks (as the session makes it) with a recording; returns the mix."""
    mix = (6000 * np.sin(2 * np.pi * 330 * np.arange(int(8000 * seconds)) / 8000)).astype(np.int16)

    async def go() -> None:
        db = Database(db_url)
        hooks = DatabaseHooks(gateway_settings(db_url, data_dir), db)
        profile = await hooks.profile_for(sid, "+15550100001", to)
        now = time.time()
        await hooks.call_ended(CallSummary(sid, "MZ1", "+15550100001", to, now - 42, now, TURNS, profile,
                                           recording_pcm16=mix))  # fmt: skip
        await db.dispose()

    asyncio.run(go())
    return mix
