"""The scripted caller: a timeline of steps, and how an utterance is carried in audio.

A caller's audio is PCM16 at 8 kHz in 20 ms frames, as a phone line sends it: silence is zeros,
and the speech of the ``n``-th :class:`Say` of the script is a constant level
:func:`speech_level` ``(n)``. The level survives the session's resampling to 16 kHz (soxr passes
a constant unchanged, away from the edges), so :func:`utterances_in` recovers, from any stretch
of audio the conversation hands to the STT or the turn detector, which utterances it holds:
:class:`~tests.fakes.speech.FakeSTT` answers with their scripted text. Nothing here uses a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tests.fakes.transport import FakeTransport

BASE_LEVEL = 1000
"""PCM16 level of utterance 0."""
LEVEL_STEP = 250
"""Level difference between consecutive utterances."""
VOICED_LEVEL = 500
"""A sample at or above this magnitude is speech (half of :data:`BASE_LEVEL`: the edge ringing of
the resampler stays well below it)."""
MAX_UTTERANCES = (32767 - BASE_LEVEL) // LEVEL_STEP
MS_PER_CHAR = 60
"""Default speaking rate of :class:`Say` without a duration: ~16 characters a second."""


def speech_level(index: int) -> int:
    """The PCM16 level that carries utterance ``index`` (0-based order of the script's :class:`Say` steps)."""
    if not 0 <= index < MAX_UTTERANCES:
        raise ValueError(f"utterance index {index} out of range 0..{MAX_UTTERANCES - 1}")
    return BASE_LEVEL + LEVEL_STEP * index


def utterance_indices(pcm16: np.ndarray, min_samples: int = 80) -> list[int]:
    """Indices of the utterances in ``pcm16`` (int16 (n,), any rate), in order, repeats merged.

    A run of at least ``min_samples`` voiced samples (``|x| >= VOICED_LEVEL``) is one piece of
    speech; its median level names the utterance. Two pieces of one utterance with a pause
    between them (a mid-sentence pause) give its index once.
    """
    voiced = np.abs(pcm16.astype(np.int32)) >= VOICED_LEVEL
    if not voiced.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]])))
    found: list[int] = []
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        if end - start < min_samples:
            continue
        level = float(np.median(np.abs(pcm16[start:end].astype(np.int32))))
        index = round((level - BASE_LEVEL) / LEVEL_STEP)
        if index >= 0 and (not found or found[-1] != index):
            found.append(index)
    return found


def utterances_in(pcm16: np.ndarray, texts: Sequence[str]) -> str:
    """The scripted text of the utterances ``pcm16`` carries, joined by spaces (``""``: no speech)."""
    return " ".join(texts[i] for i in utterance_indices(pcm16) if i < len(texts))


# ---- the script's steps ------------------------------------------------------------------------
@dataclass(frozen=True)
class Say:
    """Speak ``text`` for ``ms`` milliseconds (default: :data:`MS_PER_CHAR` per character)."""

    text: str
    ms: int | None = None

    @property
    def duration_ms(self) -> int:
        """How long the caller speaks, ms (a multiple of 20)."""
        ms = self.ms if self.ms is not None else len(self.text) * MS_PER_CHAR
        return max(20, ms // 20 * 20)


@dataclass(frozen=True)
class Pause:
    """Stay silent (zero frames) for ``ms`` milliseconds."""

    ms: int


@dataclass(frozen=True)
class Press:
    """Press a DTMF key (``0``-``9``, ``*``, ``#``)."""

    digit: str


@dataclass(frozen=True)
class Type:
    """Send typed text (a browser's chat box)."""

    text: str


@dataclass(frozen=True)
class Until:
    """Stay silent until ``condition(transport)`` holds, checked before every frame.

    Raises (in the caller, reported by :func:`tests.fakes.session.run_call`):
        AssertionError: ``timeout_ms`` of call time passed first; ``what`` names the wait.
    """

    condition: Callable[[FakeTransport], bool]
    what: str
    timeout_ms: int = 60_000


@dataclass(frozen=True)
class Do:
    """Run ``action()`` at this point of the call (e.g. bring an upstream back)."""

    action: Callable[[], None]


@dataclass(frozen=True)
class HangUp:
    """The caller hangs up (the carrier's ``stop``); the connection ends."""


Step = Say | Pause | Press | Type | Until | Do | HangUp


def script_texts(script: Sequence[Step]) -> list[str]:
    """The texts of the script's :class:`Say` steps, in order (utterance ``i`` is ``texts[i]``)."""
    return [step.text for step in script if isinstance(step, Say)]
