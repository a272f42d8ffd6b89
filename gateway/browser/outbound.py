"""The agent's audio on its way to a browser: whole frames and marks in order, ``clear`` first.

:class:`OutboundAudio` is the queue both browser carriers share: the WebSocket transport paces it
out itself (:class:`Pacer`, in real time a little ahead, like :mod:`gateway.telephony.playback`),
the WebRTC track pulls one frame per 20 ms tick (:mod:`gateway.browser.rtc`). A browser echoes no
marks, so a mark counts as played once the audio queued before it has had time to play at the
client (the carrier's clock, not the browser's). ``clear`` (barge-in) drops everything queued and
bumps :attr:`OutboundAudio.generation`, so a pacer that was waiting drops its frame too.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.conversation.transport import AudioFormat, PlayoutHooks


@dataclass(frozen=True)
class Frame:
    """One frame of ``reply_id`` in the transport's output format (PCM16 LE, ``frame_ms`` long)."""

    audio: bytes
    reply_id: str


@dataclass(frozen=True)
class Mark:
    """A mark queued after the frames before it."""

    name: str


def frames_of(audio: bytes, frame_bytes: int) -> list[bytes]:
    """``audio`` cut into ``frame_bytes`` frames; the last one padded with zeros (PCM16 silence)."""
    out = [audio[i : i + frame_bytes] for i in range(0, len(audio), frame_bytes)]
    if out and len(out[-1]) < frame_bytes:
        out[-1] = out[-1] + bytes(frame_bytes - len(out[-1]))
    return out


class OutboundAudio:
    """Frames and marks queued for one browser caller (see the module docstring).

    Args:
        fmt: the output format (``pcm16`` at the carrier's rate, 20 ms frames).
    """

    def __init__(self, fmt: AudioFormat) -> None:
        self.fmt = fmt
        self._items: deque[Frame | Mark] = deque()
        self._ready = asyncio.Event()
        self.generation = 0
        """How many times the queue was cleared."""
        self.paused = False
        """Frames are held (caller speech over the agent, not yet known to be an interruption)."""

    def play(self, audio: bytes, reply_id: str) -> None:
        """Queue ``audio`` (PCM16 at ``fmt``'s rate) of reply ``reply_id``, cut into frames."""
        for frame in frames_of(audio, self.fmt.frame_bytes):
            self._items.append(Frame(frame, reply_id))
        self._ready.set()

    def mark(self, name: str) -> None:
        """Queue mark ``name`` after the audio queued so far."""
        self._items.append(Mark(name))
        self._ready.set()

    def clear(self) -> int:
        """Drop everything queued (a pause ends with it); returns how many items were dropped."""
        dropped = len(self._items)
        self._items.clear()
        self.generation += 1
        self.paused = False
        return dropped

    def pause(self) -> None:
        """Hold the queue: :meth:`pop` gives nothing (the track plays silence) until :meth:`resume`."""
        self.paused = True

    def resume(self) -> None:
        """Give the held items from where the pause stopped."""
        self.paused = False
        if self._items:
            self._ready.set()

    @property
    def pending(self) -> int:
        """Frames and marks queued."""
        return len(self._items)

    def pop(self) -> Frame | Mark | None:
        """The next item, or ``None`` when the queue is empty or paused."""
        if not self._items or self.paused:
            self._ready.clear()
            return None
        return self._items.popleft()

    async def get(self) -> Frame | Mark:
        """The next item, waiting for one."""
        while True:
            item = self.pop()
            if item is not None:
                return item
            await self._ready.wait()


class Pacer:
    """Sends queued frames in real time, ``lead_ms`` ahead of the client's playout.

    Args:
        out: the queue.
        send: writes one frame to the client (awaited in order).
        on_mark: called with a mark's name once the audio before it has played at the client
            (loop time), unless the queue was cleared meanwhile.
        hooks: told when a reply's first frame and every frame go out.
        on_reply_start: called before the first frame of each reply is sent (``ai_audio_start``).
        lead_ms: how far ahead of real time frames are sent, ms.
    """

    def __init__(
        self,
        out: OutboundAudio,
        send: Callable[[bytes], Awaitable[None]],
        on_mark: Callable[[str], None],
        hooks: Callable[[], PlayoutHooks | None],
        on_reply_start: Callable[[str], Awaitable[None]],
        lead_ms: int = 100,
    ) -> None:
        self.out = out
        self.send = send
        self.on_mark = on_mark
        self.hooks = hooks
        self.on_reply_start = on_reply_start
        self.lead_s = lead_ms / 1000
        self._started: set[str] = set()
        self._timers: list[asyncio.TimerHandle] = []

    async def run(self) -> None:
        """Pace the queue out until cancelled."""
        loop = asyncio.get_running_loop()
        frame_s = self.out.fmt.frame_ms / 1000
        next_due, generation = 0.0, self.out.generation
        try:
            while True:
                item = await self.out.get()
                if generation != self.out.generation:  # cleared: the client's buffer was dropped too
                    next_due, generation = 0.0, self.out.generation
                    self._cancel_timers()
                now = loop.time()
                if isinstance(item, Mark):
                    self._timers = [t for t in self._timers if t.when() > now]  # keep the pending ones
                    self._timers.append(loop.call_later(max(0.0, next_due - now), self._played, item.name, generation))
                    continue
                next_due = max(next_due, now)
                if next_due - now > self.lead_s:
                    await asyncio.sleep(next_due - now - self.lead_s)
                    if generation != self.out.generation:
                        continue  # cleared while waiting: drop this frame
                if item.reply_id not in self._started:
                    self._started.add(item.reply_id)
                    await self.on_reply_start(item.reply_id)
                    hooks = self.hooks()
                    if hooks is not None:
                        hooks.on_playout_started(item.reply_id, loop.time())
                await self.send(item.audio)
                due, next_due = next_due, next_due + frame_s
                hooks = self.hooks()
                if hooks is not None:
                    hooks.on_frame_sent(item.audio, due)  # when the client plays it: the echo gate's reference
        finally:
            self._cancel_timers()

    def _played(self, name: str, generation: int) -> None:
        if generation == self.out.generation:
            self.on_mark(name)

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
