"""Scripted speech models: VAD, STT, end-of-turn detector and TTS, all reading the loop's clock.

They satisfy the Protocols of :mod:`gateway.conversation.deps` with no model: the VAD and the STT
read the utterance the caller's audio carries (:mod:`tests.fakes.caller`), the TTS answers each
sentence with silence-free audio whose length is proportional to its text. Latencies are
``asyncio.sleep`` s, so under ``looptime`` they cost no real time.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from gateway.conversation.deps import Heard, SpokenSegment
from gateway.conversation.transport import AudioFormat
from gateway.conversation.vad import FRAME_SAMPLES
from shared.errors import UpstreamError
from tests.fakes.caller import VOICED_LEVEL, utterance_indices, utterances_in


def _now() -> float:
    return asyncio.get_running_loop().time()


# ---- VAD -------------------------------------------------------------------------------------
class FakeVADStream:
    """Per-call state: 512-sample frames (32 ms at 16 kHz, as Silero), probability = voiced share."""

    def __init__(self) -> None:
        self._pending = np.zeros(0, dtype=np.int16)

    def process(self, pcm16: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Feed int16 (n,) at 16 kHz; one ``(frame (512,) int16, probability 0..1)`` per completed frame.

        The probability is the share of the frame's samples at or above
        :data:`~tests.fakes.caller.VOICED_LEVEL`: 1.0 inside speech, 0.0 in silence, in between
        on a frame where speech starts or stops.
        """
        audio = np.concatenate([self._pending, pcm16.astype(np.int16)])
        n = audio.size // FRAME_SAMPLES
        out = []
        for i in range(n):
            frame = audio[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]
            out.append((frame, float(np.mean(np.abs(frame.astype(np.int32)) >= VOICED_LEVEL))))
        self._pending = audio[n * FRAME_SAMPLES :]
        return out

    async def feed(self, pcm16: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """As :meth:`process` (no batch to wait for)."""
        return self.process(pcm16)


class FakeVAD:
    """Satisfies :class:`~gateway.conversation.deps.VoiceActivity`."""

    def stream(self) -> FakeVADStream:
        """Fresh state for one call."""
        return FakeVADStream()


# ---- STT -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Transcription:
    """One STT request: when it came (loop time), the audio length, what was answered (``None``: failed)."""

    at: float
    audio_ms: int
    text: str | None


class FakeSTT:
    """Satisfies :class:`~gateway.conversation.deps.SpeechToText`: the scripted text of the audio's utterances.

    Args:
        latency_s: how long each transcription takes (loop time).
        down: every request fails with a retryable :class:`UpstreamError` (503) while set.
        fail_calls: 0-based numbers of the requests that fail (whatever ``down`` says).

    Attributes:
        texts: utterance ``i``'s text (``run_call`` fills it from the script).
        calls: every request, in order.
    """

    def __init__(
        self, latency_s: float = 0.15, down: bool = False, fail_calls: Sequence[int] = (), language: str | None = None
    ) -> None:
        self.latency_s = latency_s
        self.language = language
        """The language the answers say they were decoded in (a :class:`Heard`), or ``None`` (plain text)."""
        self.down = down
        self.fail_calls = set(fail_calls)
        self.texts: Sequence[str] = ()
        self.calls: list[Transcription] = []
        self.languages: list[str | None] = []

    async def transcribe(self, pcm16: np.ndarray, sample_rate: int, language: str | None = None) -> str:
        """The texts of the utterances in ``pcm16`` (int16 (n,) at ``sample_rate``), joined; ``""`` for none
        (``language`` is recorded in :attr:`languages`).

        Raises:
            UpstreamError: ``down`` is set or this request is in ``fail_calls`` (service ``stt``, 503).
        """
        at = _now()
        self.languages.append(language)
        number = len(self.calls)
        audio_ms = pcm16.size * 1000 // sample_rate
        failing = self.down or number in self.fail_calls
        self.calls.append(Transcription(at, audio_ms, None if failing else utterances_in(pcm16, self.texts)))
        await asyncio.sleep(self.latency_s)
        if failing:
            raise UpstreamError("stt", "scripted outage (HTTP 503)", retryable=True, status=503)
        text = self.calls[number].text or ""
        return Heard(text, self.language, 0.0, -0.1) if self.language else text


class FakeTurnDetector:
    """Satisfies :class:`~gateway.conversation.deps.TurnDetector`: done when the last utterance heard
    so far ends like a sentence (``.``, ``?``, ``!``), e.g. not after "… the sink and".

    Attributes:
        texts: utterance ``i``'s text (``run_call`` fills it from the script).
        calls: (utterance text heard so far, probability returned) per request.
    """

    def __init__(self, complete: float = 0.9, incomplete: float = 0.1) -> None:
        self.complete = complete
        self.incomplete = incomplete
        self.texts: Sequence[str] = ()
        self.calls: list[tuple[str, float]] = []

    async def probability(self, pcm16: np.ndarray) -> float:
        """P(turn complete) for the audio so far (int16 16 kHz), answered at once."""
        found = utterance_indices(pcm16)
        text = self.texts[found[-1]] if found and found[-1] < len(self.texts) else ""
        p = self.complete if text.rstrip().endswith((".", "?", "!")) else self.incomplete
        self.calls.append((text, p))
        return p


# ---- TTS -------------------------------------------------------------------------------------
_SENTENCE = re.compile(r"(.+?[.!?]+[\"')\]]*)\s+", re.DOTALL)


def split_sentences(buffer: str) -> tuple[list[str], str]:
    """Complete sentences at the start of ``buffer`` (ended by ``.!?`` and whitespace), and the rest."""
    out = []
    while (m := _SENTENCE.match(buffer)) is not None:
        out.append(m.group(1).strip())
        buffer = buffer[m.end() :]
    return out, buffer


@dataclass(frozen=True)
class Synthesis:
    """One segment synthesised: when it was yielded (loop time), its text, its audio length."""

    at: float
    text: str
    audio_ms: int


@dataclass(frozen=True)
class Cancelled:
    """A reply closed before its text ended (barge-in): when, and the text received but not yet yielded."""

    at: float
    pending_text: str


@dataclass
class FakeSpeechStream:
    """One call's synthesis channel (satisfies :class:`~gateway.conversation.deps.SpeechStream`)."""

    tts: FakeTTS
    voice: str
    fmt: AudioFormat
    closed: bool = False
    replies: list[list[str]] = field(default_factory=list)
    """The segments of each :meth:`speak`, in order."""

    async def speak(self, text: AsyncIterator[str]) -> AsyncIterator[SpokenSegment]:
        """One segment per sentence, each ``first_audio_s`` after its text is complete.

        Raises:
            UpstreamError: the TTS is down / fails at this segment, or ``text`` raised it (the LLM).
        """
        tts = self.tts
        segments: list[str] = []
        self.replies.append(segments)
        buffer = ""
        done = False
        try:
            while not done:
                try:
                    buffer += await anext(text)
                    ready, buffer = split_sentences(buffer)
                except StopAsyncIteration:  # the text ended: what is left is the last segment
                    done = True
                    ready, rest = split_sentences(buffer)
                    ready, buffer = [*ready, rest.strip()], ""
                for sentence in [s for s in ready if s]:
                    await asyncio.sleep(tts.first_audio_s)
                    if tts.down or (tts.fail_after is not None and len(tts.segments) >= tts.fail_after):
                        raise UpstreamError("tts", "scripted outage (HTTP 503)", retryable=True, status=503)
                    segment = SpokenSegment(sentence, tts.audio_for(sentence, self.fmt))
                    segments.append(sentence)
                    tts.segments.append(Synthesis(_now(), sentence, tts.audio_ms(sentence)))
                    yield segment
        except (asyncio.CancelledError, GeneratorExit):
            tts.cancels.append(Cancelled(_now(), buffer))
            raise

    async def aclose(self) -> None:
        """Close the channel (idempotent)."""
        self.closed = True


class FakeTTS:
    """Satisfies :class:`~gateway.conversation.deps.TextToSpeech`.

    Args:
        ms_per_char: audio length per character of text (60: ~16 characters a second).
        first_audio_s: time from a sentence's text being complete to its audio (loop time).
        down: opening a channel and every segment fail (service ``tts``) while set.
        fail_after: the first ``fail_after`` segments of the call succeed, every later one fails.

    Attributes:
        streams: the channels opened. segments: every segment yielded. cancels: every reply
        closed before its text ended.
    """

    def __init__(
        self, ms_per_char: int = 60, first_audio_s: float = 0.15, down: bool = False, fail_after: int | None = None
    ) -> None:
        self.ms_per_char = ms_per_char
        self.first_audio_s = first_audio_s
        self.down = down
        self.fail_after = fail_after
        self.streams: list[FakeSpeechStream] = []
        self.segments: list[Synthesis] = []
        self.cancels: list[Cancelled] = []

    async def open(self, voice: str, fmt: AudioFormat) -> FakeSpeechStream:
        """A channel in ``voice`` answering in ``fmt``.

        Raises:
            UpstreamError: ``down`` is set.
        """
        if self.down:
            raise UpstreamError("tts", "scripted outage: connection refused", retryable=True)
        stream = FakeSpeechStream(self, voice, fmt)
        self.streams.append(stream)
        return stream

    def audio_ms(self, text: str) -> int:
        """Audio length of ``text``, ms (whole 20 ms frames, at least one)."""
        return max(1, round(len(text) * self.ms_per_char / 20)) * 20

    def audio_for(self, text: str, fmt: AudioFormat) -> bytes:
        """Non-silent audio for ``text`` in ``fmt``: whole frames."""
        frames = self.audio_ms(text) // fmt.frame_ms
        return b"\x55" * fmt.frame_bytes * frames
