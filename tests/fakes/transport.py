"""A scripted caller behind the :class:`~gateway.conversation.transport.Transport` seam, in loop time.

:class:`FakeTransport` is what a carrier would be: it feeds the conversation the caller's audio
as 20 ms PCM16 frames at 8 kHz, one every 20 ms of loop time (a frame is delivered once it has
been "captured", at the end of its 20 ms), plus DTMF, text and hang-up, following a script of
:mod:`tests.fakes.caller` steps. It plays the conversation's audio out at real time on a 20 ms
media clock (the same grid as the caller's frames) and echoes each mark once the audio queued
before it has played; ``clear`` drops what is queued and cuts the frame playing. Everything is
logged with its loop time in seconds since the call started (:class:`TransportLog`).

Under ``looptime`` the loop's clock is virtual, so a minute of call takes milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gateway.conversation.transport import (
    AudioFormat,
    AudioIn,
    CallerLeft,
    CallStarted,
    ConversationEvent,
    DigitPressed,
    MarkPlayed,
    PlayoutHooks,
    TextIn,
    TransportEvent,
)
from tests.fakes.caller import Do, HangUp, Pause, Press, Say, Step, Type, Until, script_texts, speech_level

FRAME_S = 0.02
"""One frame of the media clock (both directions), seconds."""
INPUT_RATE_HZ = 8000
FRAME_SAMPLES = INPUT_RATE_HZ * 20 // 1000
_EPS = 1e-6


@dataclass(frozen=True)
class Spoken:
    """One :class:`~tests.fakes.caller.Say` as the caller spoke it: first and last sample, seconds."""

    index: int
    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Cleared:
    """A ``clear``: when, and what it dropped (frames still queued, marks that will never be played)."""

    at: float
    frames_dropped: int
    marks_dropped: tuple[str, ...]
    cut_reply: str | None
    """The reply whose frame was playing when the clear came, if any."""


@dataclass
class TransportLog:
    """What crossed the seam, with loop times in seconds since the call started."""

    spoken: list[Spoken] = field(default_factory=list)
    digits: list[tuple[float, str]] = field(default_factory=list)
    texts: list[tuple[float, str]] = field(default_factory=list)
    frames_in: int = 0
    frames_out: list[tuple[float, str]] = field(default_factory=list)
    """(start of playout, reply id) per frame played."""
    marks_queued: list[tuple[float, str]] = field(default_factory=list)
    marks_played: list[tuple[float, str]] = field(default_factory=list)
    clears: list[Cleared] = field(default_factory=list)
    pauses: list[float] = field(default_factory=list)
    """When the conversation paused its audio (caller speech over it)."""
    resumes: list[float] = field(default_factory=list)
    """When it resumed a paused reply (a backchannel, echo or noise)."""
    caller_left_at: float | None = None
    closed_at: float | None = None
    close_code: int | None = None
    emitted: list[tuple[float, ConversationEvent]] = field(default_factory=list)
    """The conversation's text events (:meth:`FakeTransport.emit`), in order."""

    def played(self, name: str) -> float | None:
        """When mark ``name`` was played (``None``: never)."""
        return next((at for at, n in self.marks_played if n == name), None)

    def marks_of(self, reply_id: str) -> list[str]:
        """The marks of ``reply_id`` that were played, in order."""
        return [n for _, n in self.marks_played if n.rsplit(":", 1)[0] == reply_id]

    def replies(self, kind: str | None = None) -> list[str]:
        """Reply ids that played at least one frame, in order (``kind``: only ``<kind>-<n>``)."""
        seen: list[str] = []
        for _, reply_id in self.frames_out:
            if reply_id not in seen and (kind is None or reply_id.rsplit("-", 1)[0] == kind):
                seen.append(reply_id)
        return seen

    def finished(self, kind: str) -> list[str]:
        """Reply ids of ``kind`` whose end mark was played, in order."""
        return [n.rsplit(":", 1)[0] for _, n in self.marks_played if n.endswith(":end") and n.startswith(f"{kind}-")]

    def first_frame(self, reply_id: str) -> float | None:
        """When the first frame of ``reply_id`` started playing."""
        return next((at for at, r in self.frames_out if r == reply_id), None)

    def last_frame_end(self, reply_id: str) -> float | None:
        """When the last frame of ``reply_id`` finished playing (or was cut by a clear)."""
        starts = [at for at, r in self.frames_out if r == reply_id]
        return starts[-1] + FRAME_S if starts else None


@dataclass(frozen=True)
class _Frame:
    audio: bytes
    reply_id: str


@dataclass(frozen=True)
class _Mark:
    name: str


class FakeTransport:
    """One scripted caller connection; satisfies :class:`~gateway.conversation.transport.Transport`.

    Args:
        script: the caller's steps. After the last one the caller stays on the line, silent, until
            the conversation closes the connection.
        call_id, stream_id, from_, to, parameters: what :class:`CallStarted` carries.
        refused: :attr:`CallStarted.refused` (the carrier will not serve this connection).

    Attributes:
        log: everything that crossed the seam (:class:`TransportLog`).
        texts: the scripted text of utterance ``i`` (the ``i``-th :class:`Say`).
        error: what went wrong in the caller (an :class:`Until` that timed out), re-raised by ``run_call``.
    """

    input_rate_hz: int = INPUT_RATE_HZ
    output_format: AudioFormat = AudioFormat("pcmu", 8000, 20)
    echo_cancelled: bool = False

    def __init__(
        self,
        script: Sequence[Step] = (),
        *,
        call_id: str = "CA00000000000000000000000000000001",
        stream_id: str = "MZ00000000000000000000000000000001",
        from_: str = "+15550100001",
        to: str = "+15550100002",
        parameters: dict[str, str] | None = None,
        refused: str | None = None,
    ) -> None:
        self.script = list(script)
        self.texts = script_texts(self.script)
        self.started = CallStarted(call_id, stream_id, from_, to, parameters or {"From": from_, "To": to}, refused)
        self.log = TransportLog()
        self.error: BaseException | None = None
        self.t0: float | None = None
        """Loop time of the call's start (the first :meth:`receive`)."""
        self._hooks: PlayoutHooks | None = None
        self._events: asyncio.Queue[TransportEvent | None] = asyncio.Queue()
        self._caller: asyncio.Task[None] | None = None
        self._out: deque[_Frame | _Mark] = deque()
        self._out_ready = asyncio.Event()
        self._held: _Frame | _Mark | None = None
        """The item taken off the queue and waiting for its time to play."""
        self._generation = 0
        self._running = asyncio.Event()
        self._running.set()
        self._play_end = 0.0
        self._playing: str | None = None
        self._started_replies: set[str] = set()
        self._closed = False
        self._eof = False
        self._frame_no = 0

    # ---- clock -----------------------------------------------------------------------------
    def now(self) -> float:
        """Seconds since the call started (loop time)."""
        assert self.t0 is not None, "the call has not started"
        return asyncio.get_running_loop().time() - self.t0

    def stream_ms(self) -> int:
        """Caller audio delivered so far, ms (the caller's stream time)."""
        return self._frame_no * 20

    async def _sleep_until(self, at: float) -> None:
        delay = at - self.now()
        if delay > _EPS:
            await asyncio.sleep(delay)

    @staticmethod
    def _on_grid(t: float) -> float:
        """The first tick of the 20 ms media clock at or after ``t``."""
        return math.ceil(t / FRAME_S - _EPS) * FRAME_S

    # ---- Transport: input -------------------------------------------------------------------
    def bind(self, hooks: PlayoutHooks) -> None:
        """Who hears about playout (the conversation)."""
        self._hooks = hooks

    async def receive(self) -> TransportEvent | None:
        """:class:`CallStarted` first (the caller starts talking from then on), then the script's events."""
        if self.t0 is None:
            self.t0 = asyncio.get_running_loop().time()
            self._caller = asyncio.get_running_loop().create_task(self._run_caller(), name="fake-caller")
            return self.started
        if self._eof:
            return None
        event = await self._events.get()
        self._eof = event is None
        return event

    async def _run_caller(self) -> None:
        try:
            for step in self.script:
                if self._closed:
                    return
                if isinstance(step, HangUp):
                    self._leave()
                    return
                await self._step(step)
            while not self._closed:  # on the line, silent, until the agent hangs up
                await self._send_frame(0)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # an Until that timed out: the caller gives up and hangs up
            self.error = exc
            self._leave()

    async def _step(self, step: Step) -> None:
        if isinstance(step, Say):
            index = sum(isinstance(s, Say) for s in self.script[: self.script.index(step)])
            start = self.stream_ms() / 1000
            for _ in range(step.duration_ms // 20):
                await self._send_frame(speech_level(index))
            self.log.spoken.append(Spoken(index, step.text, start, self.stream_ms() / 1000))
        elif isinstance(step, Pause):
            for _ in range(step.ms // 20):
                await self._send_frame(0)
        elif isinstance(step, Press):
            self.log.digits.append((self.now(), step.digit))
            self._events.put_nowait(DigitPressed(step.digit))
        elif isinstance(step, Type):
            self.log.texts.append((self.now(), step.text))
            self._events.put_nowait(TextIn(step.text))
        elif isinstance(step, Do):
            step.action()
        elif isinstance(step, Until):
            deadline = self.now() + step.timeout_ms / 1000
            while not step.condition(self):
                if self.now() >= deadline - _EPS:
                    raise AssertionError(f"the caller waited {step.timeout_ms} ms for {step.what}")
                if self._closed:
                    raise AssertionError(f"the call ended while the caller waited for {step.what}")
                await self._send_frame(0)

    async def _send_frame(self, level: int) -> None:
        """Capture one 20 ms frame (all samples ``level``) and deliver it at its end."""
        timestamp = self.stream_ms()
        self._frame_no += 1
        await self._sleep_until(self._frame_no * FRAME_S)
        if self._closed:
            return
        self.log.frames_in += 1
        self._events.put_nowait(AudioIn(np.full(FRAME_SAMPLES, level, dtype=np.int16), timestamp))

    # ---- Transport: output ------------------------------------------------------------------
    def play(self, audio: bytes, reply_id: str) -> None:
        """Queue whole frames of :attr:`output_format` for reply ``reply_id``."""
        size = self.output_format.frame_bytes
        if len(audio) % size:
            raise AssertionError(f"{reply_id}: {len(audio)} bytes is not a whole number of {size}-byte frames")
        for i in range(0, len(audio), size):
            self._out.append(_Frame(audio[i : i + size], reply_id))
        self._out_ready.set()

    def mark(self, name: str) -> None:
        """Queue a mark after the audio queued so far."""
        self.log.marks_queued.append((self.now(), name))
        self._out.append(_Mark(name))
        self._out_ready.set()

    async def clear(self) -> None:
        """Drop queued frames and marks, and cut the frame playing, now."""
        items = [self._held, *self._out] if self._held is not None else list(self._out)
        frames = sum(isinstance(i, _Frame) for i in items)
        marks = [i.name for i in items if isinstance(i, _Mark)]
        now = self.now()
        cut = self._playing if self._play_end > now + _EPS else None
        self.log.clears.append(Cleared(now, frames, tuple(marks), cut))
        self._out.clear()
        self._generation += 1
        self._play_end = min(self._play_end, now)
        self._running.set()
        self._out_ready.set()

    def pause(self) -> None:
        """Hold the queue: the frame playing ends, no other starts until :meth:`resume` or :meth:`clear`."""
        if self._running.is_set():
            self.log.pauses.append(self.now())
            self._running.clear()

    def resume(self) -> None:
        """Play the held queue on from where it stopped."""
        if not self._running.is_set():
            self.log.resumes.append(self.now())
            self._running.set()

    @property
    def pending(self) -> int:
        """Frames and marks queued and not yet played (a mark waiting for its audio counts)."""
        return len(self._out) + (self._held is not None)

    async def run_output(self) -> None:
        """Play the queue on the media clock until cancelled; echo marks as :class:`MarkPlayed`."""
        while True:
            while not self._out:
                self._out_ready.clear()
                await self._out_ready.wait()
            item = self._out.popleft()
            generation = self._generation
            self._held = item
            try:
                if isinstance(item, _Frame):
                    await self._running.wait()
                    await self._sleep_until(self._on_grid(max(self.now(), self._play_end)))
                    while not self._running.is_set() and generation == self._generation:  # paused meanwhile
                        await self._running.wait()
                        await self._sleep_until(self._on_grid(max(self.now(), self._play_end)))
                    if generation != self._generation or self._closed:
                        continue  # cleared while it waited
                    self._frame_out(item)
                else:
                    await self._sleep_until(self._play_end)
                    if generation != self._generation or self._closed:
                        continue  # its audio was cleared: never played
                    self.log.marks_played.append((self.now(), item.name))
                    self._events.put_nowait(MarkPlayed(item.name))
            finally:
                self._held = None

    def _frame_out(self, frame: _Frame) -> None:
        at = self.now()
        self.log.frames_out.append((at, frame.reply_id))
        self._playing = frame.reply_id
        self._play_end = at + FRAME_S
        if self._hooks is None:
            return
        loop_time = asyncio.get_running_loop().time()
        if frame.reply_id not in self._started_replies:
            self._started_replies.add(frame.reply_id)
            self._hooks.on_playout_started(frame.reply_id, loop_time)
        self._hooks.on_frame_sent(frame.audio, loop_time)

    def emit(self, event: ConversationEvent) -> None:
        """Log a conversation event (transcript, agent text, recorded turn) as a screen would show it."""
        self.log.emitted.append((self.now() if self.t0 is not None else 0.0, event))

    # ---- Transport: the end -----------------------------------------------------------------
    async def close(self, code: int = 1000) -> None:
        """The conversation ends the connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.t0 is not None:
            self.log.closed_at = self.now()
        self.log.close_code = code
        self._events.put_nowait(None)
        await self.stop_caller()

    def end_stream(self) -> None:
        """The carrier ends the stream from its side (after a REST hang-up or a transfer): ``stop``."""
        if self._closed or self.log.caller_left_at is not None:
            return
        self._leave()
        if self._caller is not None and self._caller is not asyncio.current_task():
            self._caller.cancel()

    def lose(self) -> None:
        """The connection breaks without a ``stop`` (the carrier's side vanished, a network cut)."""
        if self._closed or self._eof:
            return
        self.log.caller_left_at = self.now()
        self._events.put_nowait(None)

    def _leave(self) -> None:
        self.log.caller_left_at = self.now()
        self._events.put_nowait(CallerLeft())
        self._events.put_nowait(None)

    async def stop_caller(self) -> None:
        """Stop the caller's task (the test is over)."""
        task, self._caller = self._caller, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
