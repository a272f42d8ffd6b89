"""Endpointing: turn per-frame VAD probabilities into caller utterances. Pure (no I/O, no clock).

Time is stream time: milliseconds of caller audio since the call started, advanced by the
frames pushed, so behaviour is deterministic and unit-testable. Hysteresis as in Silero VAD's
``get_speech_timestamps``: a frame is speech at ``prob >= threshold`` and silence only below
``threshold - 0.15``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SpeechStarted:
    """Confirmed speech (at least ``min_speech_ms`` voiced); ``at_ms`` is its first voiced frame."""

    at_ms: int


@dataclass(frozen=True)
class SpeechEnded:
    """End of an utterance.

    Attributes:
        audio: PCM16 16 kHz, shape (n,) int16: pre-roll + speech + up to 100 ms of trailing silence.
        start_ms: stream time of the first voiced frame.
        end_ms: stream time of the end of the last voiced frame (the caller stopped talking).
        detected_ms: stream time at which the silence rule fired (``end_ms + endpoint_silence_ms``).
    """

    audio: np.ndarray
    start_ms: int
    end_ms: int
    detected_ms: int


@dataclass(frozen=True)
class PauseDetected:
    """The caller has been silent for ``check_ms`` inside an utterance: ask a semantic
    end-of-turn model whether to :meth:`Endpointer.commit` now or keep listening.

    Attributes:
        audio: PCM16 16 kHz of the utterance so far, int16 shape (n,).
        pause_id: identifies this pause; it is stale once :attr:`Endpointer.pause_id` moves on.
    """

    audio: np.ndarray
    pause_id: int


@dataclass(frozen=True)
class PauseStarted:
    """The caller has been silent for ``early_ms`` inside an utterance: if the turn ends in this
    pause, it ends with exactly ``audio`` (for speculative work such as early STT).

    Attributes:
        audio: PCM16 16 kHz, int16 shape (n,): what :meth:`Endpointer.commit` would return as
            :attr:`SpeechEnded.audio` in this pause (pre-roll + speech + up to 100 ms of silence).
        pause_id: identifies this pause (see :class:`PauseDetected`).
    """

    audio: np.ndarray
    pause_id: int


@dataclass(frozen=True)
class SpeechResumed:
    """The caller spoke again after a :class:`PauseStarted`: that pause's ``audio`` is stale."""

    pause_id: int


EndpointEvent = SpeechStarted | SpeechEnded | PauseDetected | PauseStarted | SpeechResumed


class Endpointer:
    """Silence-based endpointing over fixed-size frames.

    Args:
        threshold: speech probability that starts/continues speech (0..1).
        silence_ms: silence after speech that ends the utterance.
        min_speech_ms: voiced audio needed before speech counts (shorter bursts are dropped).
        pre_roll_ms: audio kept from before the first voiced frame.
        max_utterance_ms: an utterance is cut here even without silence.
        frame_ms: duration of each pushed frame (32 ms for Silero at 16 kHz).
        check_ms: if set, emit :class:`PauseDetected` after this much silence (semantic
            end-of-turn); ``silence_ms`` then acts as the upper bound.
        early_ms: if set, emit :class:`PauseStarted` after this much silence (and no earlier than
            the 100 ms of trailing silence an utterance keeps), and :class:`SpeechResumed` if
            speech comes back in that pause.
    """

    def __init__(
        self,
        threshold: float = 0.5,
        silence_ms: int = 500,
        min_speech_ms: int = 250,
        pre_roll_ms: int = 200,
        max_utterance_ms: int = 30_000,
        frame_ms: int = 32,
        check_ms: int | None = None,
        early_ms: int | None = None,
    ) -> None:
        self.check_ms = check_ms
        self.early_ms = early_ms
        self._early_pause: int | None = None
        """The pause a :class:`PauseStarted` was emitted for (``None``: none in this utterance)."""
        self.pause_id = 0
        self.threshold = threshold
        self.neg_threshold = max(threshold - 0.15, 0.01)
        self.silence_ms = silence_ms
        self.min_speech_ms = min_speech_ms
        self.max_utterance_ms = max_utterance_ms
        self.frame_ms = frame_ms
        self._pre_roll: deque[np.ndarray] = deque(maxlen=max(pre_roll_ms // frame_ms, 0) or None)
        self._pre_roll_enabled = pre_roll_ms >= frame_ms
        self.now_ms = 0
        self._frames: list[np.ndarray] = []
        self._in_speech = False
        self._confirmed = False
        self._voiced_ms = 0
        self._silence_ms = 0
        self._start_ms = 0
        self._last_voiced_end_ms = 0
        self._last_voiced_index = 0

    @property
    def in_speech(self) -> bool:
        """True while a (possibly unconfirmed) utterance is open."""
        return self._in_speech

    @property
    def confirmed(self) -> bool:
        """The open utterance has reached ``min_speech_ms`` voiced (a :class:`SpeechStarted` was emitted)."""
        return self._in_speech and self._confirmed

    @property
    def silence_run_ms(self) -> int:
        """Silence since the open utterance's last voiced frame, ms (0 while it is voiced)."""
        return self._silence_ms if self._in_speech else 0

    @property
    def start_ms(self) -> int:
        """Stream time of the open utterance's first voiced frame."""
        return self._start_ms

    @property
    def voiced_ms(self) -> int:
        """Voiced audio in the open utterance so far."""
        return self._voiced_ms if self._in_speech else 0

    def commit(self) -> SpeechEnded | None:
        """End the open utterance now (the end-of-turn model said it is complete).

        Returns the utterance, or ``None`` if there is no confirmed speech to end.
        """
        if not (self._in_speech and self._confirmed):
            return None
        audio = np.concatenate(self._frames[: self._ended_keep()]).astype(np.int16)
        ended = SpeechEnded(audio, self._start_ms, self._last_voiced_end_ms, self.now_ms)
        self.reset()
        return ended

    def _ended_keep(self) -> int:
        """How many frames :meth:`commit` keeps now: up to the last voiced one + 100 ms of silence."""
        return min(len(self._frames), self._last_voiced_index + max(100 // self.frame_ms, 1))

    def reset(self) -> None:
        """Drop any open utterance (e.g. after a hang-up)."""
        self._early_pause = None
        self._frames = []
        self._in_speech = self._confirmed = False
        self._voiced_ms = self._silence_ms = 0

    def push(self, frame: np.ndarray, prob: float) -> list[EndpointEvent]:
        """Add one frame (int16, ``frame_ms`` long) with its speech probability."""
        events: list[EndpointEvent] = []
        frame_start = self.now_ms
        self.now_ms += self.frame_ms
        voiced = prob >= self.threshold
        if not self._in_speech:
            if voiced:
                self._in_speech = True
                self._confirmed = False
                self._frames = list(self._pre_roll) if self._pre_roll_enabled else []
                self._pre_roll.clear()
                self._start_ms = frame_start
                self._voiced_ms = self._silence_ms = 0
            else:
                if self._pre_roll_enabled:
                    self._pre_roll.append(frame)
                return events
        self._frames.append(frame)
        if voiced or (prob >= self.neg_threshold and self._silence_ms == 0):
            if voiced:
                self._voiced_ms += self.frame_ms
            if self._silence_ms:
                if self._early_pause == self.pause_id:
                    events.append(SpeechResumed(self.pause_id))
                    self._early_pause = None
                self.pause_id += 1
            self._silence_ms = 0
            self._last_voiced_end_ms = self.now_ms
            self._last_voiced_index = len(self._frames)
        else:
            self._silence_ms += self.frame_ms
        if not self._confirmed and self._voiced_ms >= self.min_speech_ms:
            self._confirmed = True
            events.append(SpeechStarted(at_ms=self._start_ms))
        too_long = self.now_ms - self._start_ms >= self.max_utterance_ms
        if self._silence_ms >= self.silence_ms or too_long:
            ended = self.commit()
            if ended is not None:
                events.append(ended)
            self.reset()
            return events
        keep = self._ended_keep()
        if (
            self.early_ms is not None
            and self._confirmed
            and self._early_pause != self.pause_id
            and self._silence_ms >= self.early_ms
            and keep == self._last_voiced_index + max(100 // self.frame_ms, 1)  # the trailing silence is in
        ):
            self._early_pause = self.pause_id
            events.append(PauseStarted(np.concatenate(self._frames[:keep]).astype(np.int16), self.pause_id))
        if (
            self.check_ms is not None
            and self._confirmed
            and self._silence_ms - self.frame_ms < self.check_ms <= self._silence_ms
        ):
            audio = np.concatenate(self._frames[: self._last_voiced_index]).astype(np.int16)
            events.append(PauseDetected(audio, self.pause_id))
        return events
