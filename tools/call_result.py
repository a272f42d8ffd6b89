"""What a simulated caller observed (:class:`CallResult`) and the gateway's record of the call
(:func:`fetch_call`, ``GET /calls/{call_sid}``)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx
import numpy as np

from shared.audio import ulaw_decode
from tools.stack import admin_key as default_admin_key


@dataclass
class CallResult:
    """What the simulated caller observed."""

    call_sid: str
    stream_sid: str
    agent_audio: bytearray = field(default_factory=bytearray)
    """All μ-law bytes the agent sent, in order (8 kHz)."""
    marks_received: list[str] = field(default_factory=list)
    marks_echoed: list[str] = field(default_factory=list)
    clears: int = 0
    clear_chunks: list[int] = field(default_factory=list)
    """The inbound chunk number last sent when each ``clear`` arrived (stream time, 20 ms units)."""
    malformed: int = 0
    reply_first_audio_at: float | None = None
    """monotonic time of the first agent frame after the caller stopped speaking."""
    caller_speech_end_at: float | None = None
    greeting_bytes: int = 0
    reply_bytes: int = 0
    streams: list[str] = field(default_factory=list)
    """The call's streamSids, in order (more than one: the call was resumed on a new stream)."""
    stream_urls: list[str] = field(default_factory=list)
    """The ``<Stream url>`` of each stream."""
    lost_at: list[float] = field(default_factory=list)
    """monotonic times a stream ended while the call went on."""
    resumed_at: list[float] = field(default_factory=list)
    """monotonic times a later stream's ``start`` was sent."""
    resumed_audio_at: list[float] = field(default_factory=list)
    """monotonic times the first agent audio arrived on each later stream."""
    ended: bool = False
    """The call is over on Twilio's side (a ``<Hangup/>``, no next verb, or a webhook that failed)."""

    @property
    def voice_to_voice_ms(self) -> float | None:
        """End of caller speech → first agent audio, as the caller's side sees it."""
        if self.reply_first_audio_at is None or self.caller_speech_end_at is None:
            return None
        return (self.reply_first_audio_at - self.caller_speech_end_at) * 1000

    def agent_pcm16(self) -> np.ndarray:
        """The agent's audio decoded to PCM16 at 8 kHz, shape (n,) int16."""
        return ulaw_decode(bytes(self.agent_audio))


async def fetch_call(base_url: str, call_sid: str, wait_ended_s: float = 5.0, admin_key: str | None = None) -> dict:
    """GET the gateway's record of the call (turns, latencies) once it is closed.

    ``admin_key``: the gateway's ``GATEWAY_ADMIN_API_KEY`` (default: :func:`tools.stack.admin_key`).
    """
    headers = {"X-Admin-Key": admin_key or default_admin_key()}
    deadline = time.monotonic() + wait_ended_s
    async with httpx.AsyncClient(headers=headers) as client:
        while True:
            resp = await client.get(f"{base_url.rstrip('/')}/calls/{call_sid}", timeout=5)
            if resp.status_code == 200:
                record = resp.json()
                if record.get("status") != "in-progress" or time.monotonic() > deadline:
                    return json.loads(json.dumps(record))
            elif time.monotonic() > deadline:
                resp.raise_for_status()
            await asyncio.sleep(0.1)
