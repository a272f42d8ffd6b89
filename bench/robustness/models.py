"""The real speech models, in process, on a virtual clock: what ``make eval-robustness`` calls with.

Each adapter satisfies its Protocol of :mod:`gateway.conversation.deps` with the real model (Silero
VAD, faster-whisper through the STT service's own engine, Smart Turn v3, Kokoro), runs it
synchronously, then sleeps the wall time it took on the event loop's clock: under ``looptime`` the
call's timeline then holds every model's real cost while a minute of call takes seconds. The LLM is
scripted (the evaluation is about the audio path, so every run hears the same agent): each reply is
streamed word by word after a fixed time to first token.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gateway.conversation.deps import SpokenSegment
from gateway.conversation.transport import AudioFormat
from shared.audio import TELEPHONY_RATE_HZ, float_to_pcm16, pcm16_to_float, resample, ulaw_encode
from shared.config import models_dir

WHISPER_RATE_HZ = 16000


def _now() -> float:
    return asyncio.get_running_loop().time()


async def costs(seconds: float) -> None:
    """Let ``seconds`` (a model's compute time) pass on the loop's clock."""
    await asyncio.sleep(seconds)


STT_COST_S = {False: (0.15, 0.05), True: (0.45, 0.15)}
"""What one transcription costs on the loop's clock, (fixed s, s per second of audio), English-only
tiny.en (False) and multilingual base (True): their latency on the 2-core CPU box (README,
MODELS.md). A fixed cost, not the measured one, so that runs on a shared box are repeatable."""
SMART_TURN_COST_S = 0.06
"""One Smart Turn check on the 2-core box (docs/turn-taking.md: 50–65 ms of CPU)."""


# ---- VAD -----------------------------------------------------------------------------------------
class VirtualVAD:
    """Silero VAD scored at once; a voiced frame waits ``batch_wait_ms`` as the gateway's batcher makes it."""

    def __init__(self, batch_wait_ms: int = 10) -> None:
        from gateway.conversation.vad import SileroVAD

        self.model = SileroVAD(batch_wait_ms=0)
        self.wait_s = batch_wait_ms / 1000

    def stream(self) -> _VADStream:
        """Fresh per-call state."""
        return _VADStream(self.model.stream(), self.wait_s)


class _VADStream:
    def __init__(self, inner: Any, wait_s: float) -> None:
        self.inner = inner
        self.wait_s = wait_s

    def process(self, pcm16: np.ndarray) -> list[tuple[np.ndarray, float]]:
        return list(self.inner.process(pcm16))

    async def feed(self, pcm16: np.ndarray) -> list[tuple[np.ndarray, float]]:
        out = self.process(pcm16)
        if self.wait_s > 0 and any(p > 0 for _, p in out):
            await costs(self.wait_s)
        return out


# ---- STT -----------------------------------------------------------------------------------------
@dataclass
class Heard:
    """One transcription the call asked for: loop time, audio length (ms), the text, and Whisper's scores."""

    at: float
    audio_ms: int
    text: str
    language: str
    no_speech_prob: float
    avg_logprob: float
    wall_s: float


class EngineSTT:
    """faster-whisper through the STT service's :class:`services.stt.engine.WhisperEngine` (``STT_*``
    settings: tiny.en int8 by default), one request at a time; ``calls`` records every transcription.

    ``wrap``: turns the engine's result into what the gateway's ``SpeechToText`` returns (set by
    :mod:`bench.robustness.run` to match the checked-out gateway).
    """

    def __init__(self, model: str | None = None) -> None:
        from services.stt.config import STTSettings
        from services.stt.engine import WhisperEngine

        settings = STTSettings(_env_file=None)  # type: ignore[call-arg]
        if model:
            settings.model = model
        self.engine = WhisperEngine(settings)
        self.calls: list[Heard] = []
        self.wrap: Callable[[Heard], Any] = scored
        self.denoise = False
        """Spectral gating (``noisereduce``, non-stationary) of each utterance before Whisper: the
        noise-reduction trial of issue 17 (``--denoise``; the package is not a project dependency)."""

    def run(self, pcm16: np.ndarray, sample_rate: int, language: str | None = None) -> Heard:
        """Transcribe int16 (n,) at ``sample_rate`` now (blocking)."""
        started = time.perf_counter()
        audio = pcm16_to_float(pcm16)
        if sample_rate != WHISPER_RATE_HZ:
            audio = resample(audio, sample_rate, WHISPER_RATE_HZ)
        if self.denoise:
            import noisereduce

            audio = noisereduce.reduce_noise(y=audio, sr=WHISPER_RATE_HZ, stationary=False).astype("float32")
        opts = self.engine.default_options(language=language)
        (result,) = self.engine.run_batch([self.engine.prepare(audio, opts)])
        wall = time.perf_counter() - started
        nsp = max((s.no_speech_prob for s in result.segments), default=1.0)
        logprob = min((s.avg_logprob for s in result.segments), default=-10.0)
        return Heard(_now(), pcm16.size * 1000 // sample_rate, result.text.strip(), result.language, nsp, logprob, wall)

    async def transcribe(self, pcm16: np.ndarray, sample_rate: int, *args: Any, **kwargs: Any) -> Any:
        """The gateway's ``SpeechToText.transcribe``: the real model, its cost on the loop's clock."""
        language = kwargs.get("language", args[0] if args else None)
        heard = self.run(pcm16, sample_rate, language)
        self.calls.append(heard)
        fixed, per_s = STT_COST_S[self.engine.multilingual]
        await costs(fixed + per_s * heard.audio_ms / 1000)
        return self.wrap(heard)


def scored(heard: Heard) -> Any:
    """What the gateway's STT client returns: the text with Whisper's scores where the gateway has
    :class:`gateway.conversation.deps.Heard`, plain text otherwise (older gateways)."""
    from gateway.conversation import deps

    kind = getattr(deps, "Heard", None)
    if kind is None:
        return heard.text
    return kind(
        heard.text,
        heard.language,
        heard.no_speech_prob if heard.text else None,
        heard.avg_logprob if heard.text else None,
    )


# ---- Smart Turn --------------------------------------------------------------------------------------
class VirtualSmartTurn:
    """Smart Turn v3 (the gateway's ``local`` backend) with its cost on the loop's clock."""

    def __init__(self) -> None:
        from shared.smart_turn import SmartTurn

        self.model = SmartTurn()

    async def probability(self, pcm16: np.ndarray) -> float:
        """P(turn complete) for the utterance so far (int16 16 kHz)."""
        p = self.model.probability(pcm16)
        await costs(SMART_TURN_COST_S)
        return float(p)


# ---- TTS: Kokoro, cached -----------------------------------------------------------------------------
_SENTENCE = re.compile(r"(.+?[.!?¡¿]+[\"')\]]*)\s+", re.DOTALL)


class Kokoro:
    """Kokoro-82M (the TTS service's model) in process; audio cached on disk by voice, language and text."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self._model: Any = None

    def say(self, text: str, voice: str, lang: str = "en-us") -> np.ndarray:
        """``text`` spoken in ``voice``: float32 (n,) at 8 kHz (cached)."""
        key = hashlib.sha256(f"{voice}|{lang}|{text}".encode()).hexdigest()[:24]
        path = self.cache_dir / f"{key}.npy"
        if path.exists():
            return np.load(path)
        if self._model is None:
            from kokoro_onnx import Kokoro as Model

            root = models_dir() / "kokoro"
            self._model = Model(str(root / "kokoro-v1.0.int8.onnx"), str(root / "voices-v1.0.bin"))
        samples, rate = self._model.create(text, voice=voice, lang=lang)
        audio = resample(np.asarray(samples, dtype=np.float32), rate, TELEPHONY_RATE_HZ).astype(np.float32)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        np.save(path, audio)
        return audio


@dataclass
class CachedTTS:
    """Satisfies ``TextToSpeech``: sentences in, μ-law 8 kHz segments out after ``first_audio_s``."""

    kokoro: Kokoro
    lang_of: Callable[[str], str] = lambda voice: "es" if voice.startswith(("e", "s")) else "en-us"
    first_audio_s: float = 0.25

    async def open(self, voice: str, fmt: AudioFormat) -> _Stream:
        """A channel speaking ``voice`` (``fmt`` must be μ-law 8 kHz)."""
        if fmt.encoding != "pcmu" or fmt.sample_rate_hz != TELEPHONY_RATE_HZ:
            raise ValueError(f"the evaluation speaks μ-law 8 kHz, not {fmt}")
        return _Stream(self, voice, fmt)


@dataclass
class _Stream:
    tts: CachedTTS
    voice: str
    fmt: AudioFormat

    async def speak(self, text: AsyncIterator[str]) -> AsyncIterator[SpokenSegment]:
        buffer, done = "", False
        while not done:
            try:
                buffer += await anext(text)
            except StopAsyncIteration:
                done = True
                buffer += " "
            while (m := _SENTENCE.match(buffer)) is not None or (done and buffer.strip()):
                if m is not None:
                    sentence, buffer = m.group(1).strip(), buffer[m.end() :]
                else:
                    sentence, buffer = buffer.strip(), ""
                await costs(self.tts.first_audio_s)
                audio = self.tts.kokoro.say(sentence, self.voice, self.tts.lang_of(self.voice))
                ulaw = ulaw_encode(float_to_pcm16(audio))
                pad = (-len(ulaw)) % self.fmt.frame_bytes
                yield SpokenSegment(sentence, ulaw + b"\xff" * pad)

    async def aclose(self) -> None:
        return None


# ---- LLM: scripted ---------------------------------------------------------------------------------
@dataclass
class ScriptedLLM:
    """Satisfies ``ChatModel``: answers each caller text with the reply of the scripted line it
    matches best (word overlap), else ``fallback``; words streamed ``word_s`` apart after ``ttft_s``.

    Attributes:
        requests: (loop time, caller text, reply) per request.
    """

    replies: Sequence[tuple[str, str]]
    """(caller line, the agent's reply to it)."""
    fallback: str = "Sorry, could you say that again?"
    ttft_s: float = 0.35
    word_s: float = 0.03
    requests: list[tuple[float, str, str]] = field(default_factory=list)

    def answer(self, text: str) -> str:
        """The scripted reply for ``text``."""
        from gateway.conversation.interruptions import words

        said = set(words(text))
        best, score = self.fallback, 0.0
        for line, reply in self.replies:
            ref = set(words(line))
            overlap = len(said & ref) / max(len(ref), 1)
            if overlap > score:
                best, score = reply, overlap
        return best if score >= 0.4 else self.fallback

    async def stream(self, messages: list[dict[str, str]], tools: Any = None) -> AsyncIterator[Any]:
        """The reply to the last user message, word by word."""
        text = messages[-1]["content"] if messages else ""
        reply = self.answer(text)
        self.requests.append((_now(), text, reply))
        await costs(self.ttft_s)
        for i, word in enumerate(reply.split(" ")):
            if i:
                await costs(self.word_s)
            yield word if i == 0 else " " + word

    async def prewarm(self, messages: list[dict[str, str]], tools: Any = None) -> None:
        return None
