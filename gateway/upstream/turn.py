"""Client of the STT service's ``POST /v1/turn`` (``GATEWAY_SMART_TURN_BACKEND=stt``, the GPU host).

The STT service runs Smart Turn batched across every gateway's calls
(:mod:`services.stt.turn_routes`); the gateway sends the utterance's last 8 s as raw PCM16 LE
(≤ 256 000 bytes, never the whole utterance) and loads no model. A check that fails or takes longer
than ``GATEWAY_SMART_TURN_TIMEOUT_S`` answers 0.0 ("not done"): the endpointer's max-silence bound
(``GATEWAY_SMART_TURN_MAX_SILENCE_MS``) then ends the turn, so an STT outage makes turns slower,
never stuck. Each failure is counted in ``gateway_errors_total{stage="smart_turn"}`` and logged at
warning, at most once a second per process (an outage must not flood the log at 100 calls).
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import numpy as np

from gateway.metrics import ERRORS
from shared.errors import UpstreamError
from shared.smart_turn import last_window

log = logging.getLogger(__name__)

WARN_EVERY_S = 1.0
"""Least time between two failure warnings (the metric counts every failure)."""


class RemoteTurnDetector:
    """Satisfies :class:`gateway.conversation.deps.TurnDetector` over HTTP.

    Args:
        client: the gateway's shared ``httpx.AsyncClient``.
        base_url: the STT service, e.g. ``http://127.0.0.1:8001``.
        timeout_s: the bound on one whole check (connect, send, answer), seconds.
    """

    def __init__(self, client: httpx.AsyncClient, base_url: str, timeout_s: float = 0.5) -> None:
        self.client = client
        self.url = base_url.rstrip("/") + "/v1/turn"
        self.timeout_s = timeout_s
        self.failures = 0
        """Checks that failed so far (answered 0.0)."""
        self._warned_at = -WARN_EVERY_S
        self._unlogged = 0

    async def check(self, pcm16: np.ndarray) -> float:
        """P(turn complete) from the service for int16 (n,) 16 kHz audio (only the last 8 s are sent).

        Raises:
            UpstreamError: timeout (``retryable``), connection failure, an error status (503 no
                model or queue full, 400 bad body) or an answer without a probability.
        """
        body = np.ascontiguousarray(last_window(pcm16), dtype="<i2").tobytes()
        if not body:
            raise UpstreamError("stt", "no audio to check", retryable=False)
        headers = {"content-type": "application/octet-stream"}
        try:
            async with asyncio.timeout(self.timeout_s):  # the whole check, pool wait included
                resp = await self.client.post(self.url, content=body, headers=headers, timeout=self.timeout_s)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise UpstreamError("stt", f"turn check timed out after {self.timeout_s}s", retryable=True) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError("stt", f"unreachable: {exc!r}", retryable=True) from exc
        if resp.status_code >= 400:
            raise UpstreamError.from_status("stt", resp.status_code, resp.text)
        try:
            return float(resp.json()["probability"])
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamError("stt", f"turn check answered without a probability: {resp.text[:200]}", False) from exc

    async def probability(self, pcm16: np.ndarray) -> float:
        """:meth:`check`, or 0.0 ("not done") when it fails: never raises for the service."""
        try:
            return await self.check(pcm16)
        except UpstreamError as exc:
            self._failed(exc)
            return 0.0

    def _failed(self, exc: UpstreamError) -> None:
        self.failures += 1
        ERRORS.labels("smart_turn").inc()
        now = time.monotonic()
        if now - self._warned_at < WARN_EVERY_S:
            self._unlogged += 1
            return
        log.warning(
            "Smart Turn check failed (%s; %d more since the last warning): the max-silence bound ends the turn",
            exc,
            self._unlogged,
        )
        self._warned_at, self._unlogged = now, 0
