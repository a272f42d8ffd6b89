"""The handle of one agent utterance while it is made, played and heard.

A :class:`Reply` is created when the agent starts to answer (or greets, apologises, re-prompts)
and lives until its end mark comes back from the caller's side, or it is interrupted. It records
each spoken segment with its mark, which marks the caller's side has played, when its first
frame went out, and its latencies; barge-in calls :meth:`Reply.interrupt` and whoever waits on the
reply is released. After LiveKit Agents' ``SpeechHandle`` (``interrupt``, ``wait_for_playout``,
done callbacks).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Reply:
    """One agent utterance.

    Attributes:
        reply_id: ``<kind>-<n>`` (``greeting-1``, ``reply-3``, ``apology-4``, …); its marks are
            ``<reply_id>:<segment index>`` and ``<reply_id>:end``.
        segments: (mark name, text) of each segment queued for playout, in order.
        played: the marks the caller's side has played.
        latency_ms: stage latencies of this reply (``llm_ttft_ms``, ``tts_first_audio_ms``, …), ms.
        started_at: when the reply was created, Unix seconds.
        first_frame_at: loop time (``loop.time()``) when its first frame left for the caller.
        speech_end: loop time the caller's speech ended, for an answer to it; when set, the first
            frame records ``latency_ms["voice_to_voice_ms"]`` (so a reply cut short by a barge-in or
            a hang-up keeps it).
        interrupted: the caller cut it off (barge-in) or hung up before its end mark.
        recorded: its turn has been written to the call's record.
    """

    reply_id: str
    segments: list[tuple[str, str]] = field(default_factory=list)
    played: set[str] = field(default_factory=set)
    latency_ms: dict[str, float] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    first_frame_at: float | None = None
    speech_end: float | None = None
    interrupted: bool = False
    recorded: bool = False
    history_msg: dict[str, str] | None = None
    """Its assistant message in the LLM history (trimmed to the heard text on barge-in)."""
    all_queued: bool = False
    """The end mark is queued: no more audio will come."""
    _first_frame: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _callbacks: list[Callable[[Reply], None]] = field(default_factory=list, repr=False)

    @property
    def kind(self) -> str:
        """``greeting``, ``reply``, ``apology``, ``reprompt``, ``goodbye``, ``transfer``, ``confirm``."""
        return self.reply_id.rsplit("-", 1)[0]

    @property
    def end_mark(self) -> str:
        """The mark queued after the reply's last frame."""
        return f"{self.reply_id}:end"

    def mark_for(self, index: int) -> str:
        """The mark queued after segment ``index`` (0-based)."""
        return f"{self.reply_id}:{index}"

    # ---- what is said and heard --------------------------------------------------------------
    def add_segment(self, mark: str, text: str) -> None:
        """Segment ``text`` is queued for playout, followed by ``mark``."""
        self.segments.append((mark, text))

    @property
    def spoken(self) -> bool:
        """At least one segment was queued (the reply says something)."""
        return bool(self.segments)

    def text(self) -> str:
        """Everything the agent meant to say."""
        return " ".join(t for _, t in self.segments)

    def heard_text(self) -> str:
        """Only the segments whose marks came back (the caller heard them)."""
        return " ".join(t for m, t in self.segments if m in self.played)

    @property
    def played_out(self) -> bool:
        """The end mark came back: the caller heard all of it."""
        return self.end_mark in self.played

    @property
    def done(self) -> bool:
        """Played out or interrupted: no more of it will be heard."""
        return self._done.is_set()

    # ---- events ----------------------------------------------------------------------------
    def frame_sent(self, at: float) -> None:
        """Its first frame left for the caller at loop time ``at`` (later calls are ignored)."""
        if self.first_frame_at is None:
            self.first_frame_at = at
            if self.speech_end is not None:
                self.latency_ms["voice_to_voice_ms"] = (at - self.speech_end) * 1000
            self._first_frame.set()

    def mark_played(self, name: str) -> None:
        """The caller's side played ``name``; the end mark completes the reply."""
        self.played.add(name)
        if name == self.end_mark:
            self._finish()

    def queued_all(self) -> None:
        """The end mark is queued; a reply that said nothing is complete now."""
        self.all_queued = True
        if not self.segments:
            self._finish()

    def interrupt(self) -> None:
        """Barge-in or hang-up: nothing more of it plays; waiters are released. Idempotent."""
        if not self.played_out:
            self.interrupted = True
        self._finish()

    def add_done_callback(self, callback: Callable[[Reply], None]) -> None:
        """Call ``callback(reply)`` once it is done (at once if it already is)."""
        if self.done:
            callback(self)
        else:
            self._callbacks.append(callback)

    async def wait_for_playout(self) -> bool:
        """Wait until it is done; ``True`` when the caller heard it all."""
        await self._done.wait()
        return self.played_out

    async def wait_for_first_frame(self) -> float | None:
        """Wait until its first frame is sent (loop time) or it is done without one (``None``)."""
        if self.first_frame_at is None and not self.done:
            waiters = {asyncio.ensure_future(self._first_frame.wait()), asyncio.ensure_future(self._done.wait())}
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
        return self.first_frame_at

    def _finish(self) -> None:
        if self._done.is_set():
            return
        self._done.set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)
