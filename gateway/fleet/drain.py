"""SIGTERM drains the gateway: no new calls, the current calls go on, then the usual shutdown.

uvicorn answers SIGTERM by closing every WebSocket at once (code 1012) and stopping. Before that,
the gateway should stop taking calls and let its calls end: :class:`Drain` wraps the SIGTERM
handler uvicorn installed (it runs the app's lifespan inside its own signal capture, so the
lifespan sees uvicorn's handler and can chain to it). The first SIGTERM marks the gateway
draining in the registry (the voice webhook, on any gateway, sends it no more calls) and waits
until its last call has ended, or ``GATEWAY_FLEET__DRAIN_TIMEOUT_S``; then it hands the signal to
uvicorn. Calls still open then lose their stream without a ``stop``, so Twilio runs the
``<Redirect>`` and another gateway resumes them (:mod:`gateway.conversation.resume`). A second
SIGTERM, or SIGINT (Ctrl-C), stops at once.

Signals can only be handled in the main thread: an app served from another thread (the tests'
in-process servers) installs nothing and is drained by calling :meth:`Drain.run` directly.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from gateway.fleet.registry import GatewayRegistry

log = logging.getLogger(__name__)

POLL_S = 0.2
"""How often the drain looks at the number of live calls, seconds."""


class Drain:
    """The gateway's drain on SIGTERM.

    Args:
        registry: this gateway's registry entry (marked draining).
        live_calls: how many calls this process serves now.
        timeout_s: the longest drain, seconds.
    """

    def __init__(self, registry: GatewayRegistry, live_calls: Callable[[], int], timeout_s: float) -> None:
        self.registry = registry
        self.live_calls = live_calls
        self.timeout_s = timeout_s
        self.task: asyncio.Task[None] | None = None
        self._previous: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self) -> bool:
        """Chain a SIGTERM handler in front of the current one (uvicorn's); returns whether it was
        installed (only from the main thread, over a callable handler)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return False
        self._previous, self._loop = previous, asyncio.get_running_loop()
        signal.signal(signal.SIGTERM, self._on_sigterm)
        return True

    def uninstall(self) -> None:
        """Put the previous SIGTERM handler back (if :meth:`install` replaced it)."""
        if self._previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _on_sigterm(self, sig: int, frame: FrameType | None) -> None:
        if self.task is not None or self._loop is None:  # the second SIGTERM: stop now
            self._previous(sig, frame)
            return
        self._loop.call_soon_threadsafe(self._start, sig)

    def _start(self, sig: int) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._then_exit(sig), name="drain")

    async def _then_exit(self, sig: int) -> None:
        try:
            await self.run()
        finally:
            if self._previous is not None:
                self._previous(sig, None)  # uvicorn's handle_exit: the graceful shutdown

    async def run(self) -> int:
        """Drain: announce it, then wait until no call is left or the timeout; returns the calls left."""
        log.info("draining: no new calls; %d call(s) go on (at most %.0fs)", self.live_calls(), self.timeout_s)
        await self.registry.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while self.live_calls() > 0 and loop.time() < deadline:  # noqa: ASYNC110 (a count, not an event)
            await asyncio.sleep(POLL_S)
        left = self.live_calls()
        if left:
            log.warning("drain timed out with %d call(s) open: they are handed over on shutdown", left)
        else:
            log.info("drained: no call left")
        return left
