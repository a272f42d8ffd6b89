"""Outbound audio to Twilio: 20 ms μ-law frames paced in real time, marks in order, ``clear`` first.

Twilio plays what it receives at real time and buffers the rest; keeping that buffer between
``lead_ms`` and ``lead_ms + tick_ms`` ahead of real time keeps it small, so a ``clear`` (barge-in)
silences the caller's line at once and marks are echoed close to when the caller actually heard
the audio before them. The pacer wakes once per ``tick_ms`` (default 60 ms: three frames a wake)
rather than once per 20 ms frame: a third of the timer wake-ups per call (issue 13).

``pause`` stops sending frames at once (what Twilio already buffered, at most ``lead_ms + tick_ms``,
plays on) and ``resume`` sends on from the frame where it stopped: caller speech over the agent
silences the line at its onset, before it is known to be an interruption (issue 17).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.conversation.transport import PlayoutHooks
from shared.audio import FRAME_MS
from shared.twilio_media import Clear, Command, SendMark, SendMedia

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Frame:
    payload: bytes
    reply_id: str


@dataclass(frozen=True)
class _Mark:
    name: str


class Playback:
    """Per-call outbound queue and pacer (run :meth:`run` as one of the call's tasks).

    Args:
        send: coroutine that writes one serialised command to the WebSocket.
        stream_sid: Twilio stream sid for every command.
        lead_ms: the least audio kept ahead of real time at Twilio, ms (a stall of the event
            loop shorter than this is not heard).
        tick_ms: how often the pacer wakes while a reply plays, ms; each wake tops the buffer
            up to ``lead_ms + tick_ms`` ahead (0: one wake per frame).
        hooks: told when a reply's first frame and every frame go out (loop time,
            :class:`~gateway.conversation.transport.PlayoutHooks`).
    """

    def __init__(
        self,
        send: Callable[[Command], Awaitable[None]],
        stream_sid: str,
        lead_ms: int = 100,
        hooks: PlayoutHooks | None = None,
        tick_ms: int = 60,
    ) -> None:
        self._send = send
        self.hooks = hooks
        self._generation = 0
        self.stream_sid = stream_sid
        self.lead_s = lead_ms / 1000
        self.tick_s = max(0, tick_ms) / 1000
        self._queue: asyncio.Queue[_Frame | _Mark] = asyncio.Queue()
        self._next_due = 0.0
        self._started: set[str] = set()
        self._running = asyncio.Event()
        self._running.set()
        self._held = False
        """A frame is taken off the queue and waits (for its time, or for :meth:`resume`)."""

    def enqueue_audio(self, frames: list[bytes], reply_id: str) -> None:
        """Queue 160-byte μ-law frames belonging to reply ``reply_id``."""
        for f in frames:
            self._queue.put_nowait(_Frame(f, reply_id))

    def enqueue_mark(self, name: str) -> None:
        """Queue a mark after the audio queued so far."""
        self._queue.put_nowait(_Mark(name))

    @property
    def pending_frames(self) -> int:
        """Items waiting to be sent (a frame held by a pause counts)."""
        return self._queue.qsize() + self._held

    @property
    def paused(self) -> bool:
        """Frames are held (:meth:`pause`)."""
        return not self._running.is_set()

    def pause(self) -> None:
        """Stop sending frames now; marks right behind audio already sent still go. Idempotent."""
        self._running.clear()

    def resume(self) -> None:
        """Send on from the frame where :meth:`pause` stopped, paced from now. Idempotent."""
        self._running.set()

    async def clear(self) -> None:
        """Barge-in: drop queued audio and marks, send ``clear`` now (a pause ends with it)."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self._next_due = 0.0
        self._generation += 1
        self._running.set()
        await self._send(Clear(self.stream_sid))

    async def run(self) -> None:
        """Send queued items forever (cancel to stop), frames paced on the loop's clock.

        Frame ``i`` of a burst is due to play at ``t0 + i·20 ms``. A frame is sent at once while it
        is due at most ``lead + tick`` ahead of now; otherwise the pacer sleeps until it is
        ``lead`` ahead, then sends the next ``tick`` worth in one go. While paused it holds the
        next frame; after a resume the burst starts again from now. ``on_frame_sent`` is told
        each frame's due time (when the caller's side plays it): the echo gate's reference.
        """
        loop = asyncio.get_running_loop()
        frame_s = FRAME_MS / 1000
        while True:
            item = await self._queue.get()
            if isinstance(item, _Mark):
                await self._send(SendMark(self.stream_sid, item.name))
                continue
            generation = self._generation
            self._held = True
            try:
                due = await self._wait_due(loop, generation)
            finally:
                self._held = False
            if due is None:  # cleared while it waited: drop this frame
                continue
            await self._send(SendMedia(self.stream_sid, item.payload))
            self._next_due += frame_s
            if self.hooks is not None:
                if item.reply_id not in self._started:
                    self._started.add(item.reply_id)
                    self.hooks.on_playout_started(item.reply_id, loop.time())
                self.hooks.on_frame_sent(item.payload, due)

    async def _wait_due(self, loop: asyncio.AbstractEventLoop, generation: int) -> float | None:
        """Wait until the next frame may be sent (not paused, at most ``lead + tick`` ahead); the
        loop time it is due to play, or ``None`` if a ``clear`` came meanwhile."""
        while True:
            if not self._running.is_set():
                await self._running.wait()
            if generation != self._generation:
                return None
            now = loop.time()
            if self._next_due < now:
                self._next_due = now
            if self._next_due - now <= self.lead_s + self.tick_s:
                return self._next_due
            await asyncio.sleep(self._next_due - now - self.lead_s)
            if generation != self._generation:
                return None
            if self._running.is_set():
                return self._next_due
            # paused while it slept: wait for the resume, then pace again from then
