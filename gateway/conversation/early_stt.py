"""Early (speculative) transcription: transcribe an utterance while its end of turn is being decided.

STT only starts after the endpoint decision (Smart Turn's verdict, or the silence rule), so the
caller waits for both, one after the other. :class:`EarlyTranscript` starts the transcription when
the caller's pause begins (:class:`~gateway.conversation.endpointing.PauseStarted`, after
``GATEWAY_LISTENING__EARLY_STT_MS`` of silence), on exactly the audio the turn would end with. When
the turn ends on that same audio (the caller did not speak again), the responder awaits that
transcript instead of transcribing again; when the caller resumes, it is cancelled and dropped.
The audio is compared sample for sample, so a speculative transcript is only ever used for the
audio it was made of, and the text is the one the normal path would have got.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np

from gateway.conversation.context import now
from gateway.conversation.deps import SpeechToText
from shared.errors import UpstreamError

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]]


class Speculation:
    """One speculative transcription in flight (or done).

    Attributes:
        audio: what is transcribed, PCM16 int16 (n,) at the STT rate.
        started_at: loop time the transcription was sent, seconds.
        finished_at: loop time it answered (or failed), seconds; ``None`` while in flight.
    """

    def __init__(self, stt: SpeechToText, audio: np.ndarray, sample_rate_hz: int, spawn: Spawn) -> None:
        self.audio = audio
        self.started_at = now()
        self.finished_at: float | None = None
        self.task: asyncio.Task[str | UpstreamError] = spawn(self._run(stt, sample_rate_hz), "early-stt")

    async def _run(self, stt: SpeechToText, sample_rate_hz: int) -> str | UpstreamError:
        # An upstream failure is a result, not a task error (that would end the call): the
        # responder falls back to a normal transcription.
        try:
            return await stt.transcribe(self.audio, sample_rate_hz)
        except UpstreamError as exc:
            return exc
        finally:
            self.finished_at = now()

    async def text(self) -> str:
        """The transcript (awaits it if still in flight; cancelling the caller cancels it).

        Raises:
            UpstreamError: the speculative transcription failed.
        """
        result = await self.task
        if isinstance(result, UpstreamError):
            raise result
        return result

    @property
    def duration_ms(self) -> float:
        """The transcription's own duration (sent → answered), ms; up to now while in flight."""
        return ((self.finished_at if self.finished_at is not None else now()) - self.started_at) * 1000

    def cancel(self) -> None:
        """Stop the transcription (its HTTP request is dropped)."""
        self.task.cancel()


class EarlyTranscript:
    """At most one speculative transcription per call: :meth:`start` at a pause, :meth:`take` at the
    end of the turn, :meth:`cancel` when the caller speaks again.

    Args:
        stt: the speech-to-text client.
        sample_rate_hz: the rate of the audio given to :meth:`start` and :meth:`take` (16000).
        spawn: runs a coroutine as one of the call's tasks (cancelled at hang-up).
    """

    def __init__(self, stt: SpeechToText, sample_rate_hz: int, spawn: Spawn) -> None:
        self._stt = stt
        self._rate_hz = sample_rate_hz
        self._spawn = spawn
        self.pending: Speculation | None = None
        """The speculation in flight or done, not yet taken."""

    def start(self, audio: np.ndarray) -> None:
        """Transcribe ``audio`` (PCM16 int16 (n,)) now, replacing (cancelling) any earlier speculation."""
        self.cancel()
        self.pending = Speculation(self._stt, audio, self._rate_hz, self._spawn)

    def cancel(self) -> None:
        """Drop the speculation, if any (the caller spoke again: its audio is no longer the turn's)."""
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None

    def take(self, audio: np.ndarray) -> Speculation | None:
        """The speculation made of exactly ``audio``, handed over (the slot is emptied either way).

        ``None`` when there is none or it was made of other audio (that one is cancelled).
        """
        spec, self.pending = self.pending, None
        if spec is None:
            return None
        if spec.audio.shape == audio.shape and np.array_equal(spec.audio, audio):
            return spec
        log.info("early transcript of %d samples dropped: the turn ended with %d", spec.audio.size, audio.size)
        spec.cancel()
        return None
