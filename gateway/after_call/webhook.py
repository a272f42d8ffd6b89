"""Post-call webhooks: JSON POST with exponential-backoff retries (tenacity).

At-least-once delivery from a durable outbox is a separate piece of work; this sender retries
in memory and gives up after ``attempts``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from gateway.metrics import ERRORS, WEBHOOKS
from shared.errors import UpstreamError

log = logging.getLogger(__name__)


class WebhookSender:
    """Delivers payloads in background tasks owned by the app (not by the call).

    Args:
        client: shared ``httpx.AsyncClient``.
        timeout_s: per attempt, seconds.
        attempts: total attempts (1 = no retry).
    """

    def __init__(self, client: httpx.AsyncClient, timeout_s: float = 5.0, attempts: int = 4) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.attempts = attempts
        self._tasks: set[asyncio.Task[bool]] = set()

    def submit(self, url: str, payload: dict[str, Any]) -> asyncio.Task[bool]:
        """Start delivering ``payload`` to ``url``; returns the task (result: delivered?)."""
        task = asyncio.create_task(self.deliver(url, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _post_once(self, url: str, payload: dict[str, Any]) -> None:
        try:
            resp = await self.client.post(url, json=payload, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            WEBHOOKS.labels("error").inc()
            raise UpstreamError("webhook", repr(exc), retryable=True) from exc
        if resp.status_code >= 300:
            WEBHOOKS.labels("error").inc()
            raise UpstreamError.from_status("webhook", resp.status_code, resp.text)
        WEBHOOKS.labels("delivered").inc()

    async def deliver(self, url: str, payload: dict[str, Any]) -> bool:
        """POST with retries on retryable failures; returns ``True`` once delivered."""
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=0.5, max=10),
                retry=retry_if_exception(lambda e: isinstance(e, UpstreamError) and e.retryable),
                reraise=True,
            ):
                with attempt:
                    await self._post_once(url, payload)
        except UpstreamError as exc:
            ERRORS.labels("webhook").inc()
            log.error("webhook to %s failed for good: %s", url, exc)
            return False
        return True

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) for deliveries in flight, e.g. at shutdown."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)
