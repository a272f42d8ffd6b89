"""The evaluation's carrier: a scripted caller on a :class:`~bench.robustness.line.PhoneLine`,
behind the gateway's :class:`~gateway.conversation.transport.Transport` seam, in loop time.

Outbound audio goes through the gateway's real Twilio pacer (:class:`gateway.telephony.playback.Playback`,
the ``GATEWAY_TWILIO__*`` lead and tick) into a :class:`~bench.robustness.line.SimulatedCarrier`,
whose loudspeaker output is the echo's source; inbound audio is the caller's script rendered by the
line, one 20 ms ``AudioIn`` every 20 ms of loop time, as Twilio sends it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.robustness.line import FRAME_SAMPLES, PhoneLine, SimulatedCarrier
from gateway.conversation.transport import (
    AudioFormat,
    AudioIn,
    CallerLeft,
    CallStarted,
    ConversationEvent,
    MarkPlayed,
    PlayoutHooks,
    TransportEvent,
)
from gateway.telephony.playback import Playback
from shared import twilio_media as tw

TICK_S = 0.02
log = logging.getLogger(__name__)


# ---- the caller's script --------------------------------------------------------------------------
@dataclass(frozen=True)
class Speak:
    """Say ``audio`` (float, 8 kHz, at the line's level). ``role``: ``turn`` (to be answered),
    ``backchannel`` (over the agent; must not interrupt) or ``interruption`` (over the agent; must)."""

    audio: np.ndarray
    text: str
    role: str = "turn"


@dataclass(frozen=True)
class AfterAgent:
    """Stay quiet until the agent's next utterance (one that starts after the caller's last words)
    has played and the line has been idle ``settle_s``; go on after ``timeout_s`` regardless."""

    settle_s: float = 0.8
    timeout_s: float = 30.0


@dataclass(frozen=True)
class IntoAgent:
    """Stay quiet until the agent's next utterance has been playing ``after_s`` (then talk over it)."""

    after_s: float = 1.5
    timeout_s: float = 30.0


@dataclass(frozen=True)
class Quiet:
    """Say nothing for ``seconds`` (the background goes on): a silence or noise-only turn; ``sounds``
    (float, 8 kHz) are non-speech sounds the caller makes meanwhile (a breath, a cough)."""

    seconds: float
    sounds: np.ndarray | None = None


Step = Speak | AfterAgent | IntoAgent | Quiet


@dataclass
class Utterance:
    """One :class:`Speak` as it went out: ticks (20 ms) of its first and last frame, and of the first
    frame of actual speech (above −40 dB of its peak)."""

    text: str
    role: str
    start_tick: int
    onset_tick: int
    end_tick: int


@dataclass
class CallLog:
    """What the caller's side saw, in media ticks (20 ms from the call's start)."""

    utterances: list[Utterance] = field(default_factory=list)
    quiet: list[tuple[int, int]] = field(default_factory=list)
    """(first, last) tick of each :class:`Quiet` window."""
    pauses: list[int] = field(default_factory=list)
    resumes: list[int] = field(default_factory=list)
    timeouts: list[str] = field(default_factory=list)
    """Waits of the script that gave up (no reply came)."""
    ticks: int = 0


def onset_frames(audio: np.ndarray) -> int:
    """Index of the first 20 ms frame of ``audio`` within 40 dB of its loudest frame."""
    n = max(-(-audio.size // FRAME_SAMPLES), 1)
    rms = np.sqrt(np.mean(np.pad(audio, (0, n * FRAME_SAMPLES - audio.size)).reshape(n, -1) ** 2, axis=1))
    return int(np.argmax(rms > rms.max() * 0.01))


class LineTransport:
    """One scripted call over a phone line; satisfies :class:`~gateway.conversation.transport.Transport`.

    Args:
        script: the caller's steps; the caller hangs up after the last one.
        line: renders what the caller's side sends.
        lead_ms, tick_ms: the pacer's settings (``GATEWAY_TWILIO__PLAYBACK_LEAD_MS``/``_TICK_MS``).
    """

    input_rate_hz = 8000
    output_format = AudioFormat("pcmu", 8000, 20)
    echo_cancelled = False

    def __init__(self, script: list[Step], line: PhoneLine, lead_ms: int = 100, tick_ms: int = 60) -> None:
        self.script = script
        self.line = line
        self.carrier = SimulatedCarrier()
        self.log = CallLog()
        self._events: asyncio.Queue[TransportEvent | None] = asyncio.Queue()
        self._hooks: PlayoutHooks | None = None
        self._playback = Playback(self._send, "MZeval", lead_ms, _Hooks(self), tick_ms)
        self._t0 = 0.0
        self._tick = 0
        self._started = False
        self._caller: asyncio.Task[None] | None = None
        self._closed = False
        self._speech: np.ndarray | None = None
        self._speech_pos = 0
        self._last_words_tick = 0

    # ---- clock and the agent's side as heard ------------------------------------------------
    def now_tick(self) -> int:
        """Media ticks since the call started."""
        return self._tick

    def agent_utterances_since(self, tick: int) -> list[str]:
        """Reply ids whose first frame played at or after ``tick``."""
        return [r for r, t in self.carrier.first_played.items() if t >= tick]

    def idle_ticks(self) -> int:
        """Ticks since the loudspeaker last played agent audio (0 while it plays)."""
        last = self.carrier.played[-1][0] if self.carrier.played else -1
        return self._tick - 1 - last

    def playing_ticks(self, reply_id: str) -> int:
        """Frames of ``reply_id`` played so far."""
        return sum(1 for _, r in self.carrier.played if r == reply_id)

    # ---- Transport: input -----------------------------------------------------------------
    def bind(self, hooks: PlayoutHooks) -> None:
        """Who hears about playout."""
        self._hooks = hooks

    async def receive(self) -> TransportEvent | None:
        """:class:`CallStarted`, then audio every 20 ms, marks, and :class:`CallerLeft` at the end."""
        if not self._started:
            self._started = True
            loop = asyncio.get_running_loop()
            self._t0 = loop.time()
            self._caller = loop.create_task(self._run_caller(), name="eval-caller")
            return CallStarted("CAeval", "MZeval", "+15550100001", "+15550100002", {})
        return await self._events.get()

    async def _run_caller(self) -> None:
        try:
            for step in self.script:
                await self._step(step)
            await self._quiet_ticks(10)
        except Exception:
            log.exception("the scripted caller failed")
            raise
        finally:
            self._events.put_nowait(CallerLeft())
            self._events.put_nowait(None)

    async def _step(self, step: Step) -> None:
        if isinstance(step, Speak):
            start = self._tick
            self.log.utterances.append(Utterance(step.text, step.role, start, start + onset_frames(step.audio), start))
            self._speech, self._speech_pos = step.audio, 0
            while self._speech is not None:
                await self._next_tick()
            self.log.utterances[-1].end_tick = self._tick - 1
            self._last_words_tick = self._tick
        elif isinstance(step, Quiet):
            first = self._tick
            self._speech, self._speech_pos = step.sounds, 0
            await self._quiet_ticks(round(step.seconds / TICK_S))
            self._speech = None
            self.log.quiet.append((first, self._tick - 1))
        elif isinstance(step, AfterAgent | IntoAgent):
            since = self._last_words_tick
            deadline = self._tick + round(step.timeout_s / TICK_S)
            while self._tick < deadline:
                started = self.agent_utterances_since(since)
                if isinstance(step, AfterAgent):
                    if started and self.idle_ticks() >= round(step.settle_s / TICK_S) and self.pending == 0:
                        return
                elif started and self.playing_ticks(started[0]) >= round(step.after_s / TICK_S):
                    return
                await self._next_tick()
            self.log.timeouts.append(f"{type(step).__name__} after tick {since}")

    async def _quiet_ticks(self, n: int) -> None:
        for _ in range(n):
            await self._next_tick()

    async def _next_tick(self) -> None:
        """Wait for the end of the current 20 ms tick, then send what the caller's side captured in it."""
        k = self._tick
        delay = self._t0 + (k + 1) * TICK_S - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)
        played = self.carrier.tick(k)
        for name in self.carrier.marks_out:
            self._events.put_nowait(MarkPlayed(name))
        self.carrier.marks_out.clear()
        speech = np.zeros(FRAME_SAMPLES)
        if self._speech is not None:
            chunk = self._speech[self._speech_pos : self._speech_pos + FRAME_SAMPLES]
            speech[: chunk.size] = chunk
            self._speech_pos += FRAME_SAMPLES
            if self._speech_pos >= self._speech.size:
                self._speech = None
        self._events.put_nowait(AudioIn(self.line.frame(speech, played), k * 20))
        self._tick = k + 1
        self.log.ticks = self._tick

    # ---- Transport: output (the real pacer into the simulated carrier) -------------------------
    async def _send(self, command: tw.Command) -> None:
        if isinstance(command, tw.SendMedia):
            self.carrier.media(command.payload, self._sending)
        elif isinstance(command, tw.SendMark):
            self.carrier.mark(command.name)
        elif isinstance(command, tw.Clear):
            self.carrier.clear(self._tick)

    _sending = ""
    """The reply whose frame the pacer is sending (set by its hooks; see :class:`_Hooks`)."""

    def play(self, audio: bytes, reply_id: str) -> None:
        """Queue μ-law frames of ``reply_id``."""
        frames = [audio[i : i + 160] for i in range(0, len(audio), 160)]
        self._playback.enqueue_audio(frames, reply_id)

    def mark(self, name: str) -> None:
        """Queue a mark."""
        self._playback.enqueue_mark(name)

    async def clear(self) -> None:
        """Barge-in: the pacer's ``clear``."""
        await self._playback.clear()

    def pause(self) -> None:
        """Stop sending the agent's audio (what the carrier buffered plays on)."""
        self.log.pauses.append(self._tick)
        self._playback.pause()

    def resume(self) -> None:
        """Send the paused audio on from where it stopped."""
        self.log.resumes.append(self._tick)
        self._playback.resume()

    @property
    def pending(self) -> int:
        """Frames and marks not yet sent by the pacer, plus audio the carrier has not played."""
        return self._playback.pending_frames + sum(isinstance(i, tuple) for i in self.carrier.buffer)

    async def run_output(self) -> None:
        """The pacer."""
        await self._playback.run()

    def emit(self, event: ConversationEvent) -> None:
        """A phone line shows nothing: the conversation's text events are dropped (as Twilio's transport does)."""

    async def close(self, code: int = 1000) -> None:
        """The gateway ends the call."""
        if self._closed:
            return
        self._closed = True
        self._events.put_nowait(None)
        if self._caller is not None and self._caller is not asyncio.current_task():
            self._caller.cancel()
            await asyncio.gather(self._caller, return_exceptions=True)


class _Hooks:
    """Passes the pacer's playout reports on to the conversation, and tags the carrier's frames with their reply."""

    def __init__(self, transport: LineTransport) -> None:
        self.t = transport

    def on_playout_started(self, reply_id: str, at: float) -> None:
        t = self.t
        # The frame was handed to the carrier just before this report: it is this reply's first.
        for i in range(len(t.carrier.buffer) - 1, -1, -1):
            item = t.carrier.buffer[i]
            if isinstance(item, tuple):
                t.carrier.buffer[i] = (item[0], reply_id)
                break
        t._sending = reply_id
        if t._hooks is not None:
            t._hooks.on_playout_started(reply_id, at)

    def on_frame_sent(self, audio: bytes, at: float) -> None:
        if self.t._hooks is not None:
            self.t._hooks.on_frame_sent(audio, at)

    def __getattr__(self, name: str) -> Callable[..., Any]:  # hooks a newer pacer may call
        return getattr(self.t._hooks, name)
