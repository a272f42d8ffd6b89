"""The Kokoro-82M engine: text → float32 audio at 24 kHz, through a bounded batching scheduler.

Pipeline of one segment (a sentence or clause, see :mod:`services.tts.segmenter`):
normalise (:func:`services.tts.normalize.normalize_for_speech`) → phonemise with espeak-ng
(kokoro-onnx's ``Tokenizer``) → split into windows of ≤ 510 phonemes (kokoro-onnx's
``split_phonemes``) → one model pass per window with the voice's style row for that length →
trim leading/trailing silence (kokoro-onnx's librosa-derived ``trim``) → add the pause its final
punctuation calls for (0.25 s after a sentence, 0.1 s after a clause, kokoro-onnx's defaults).

Backends (``TTS_BACKEND``):

* ``onnx`` — kokoro-onnx's int8 graph on onnxruntime (CPU; ``TTS_DEVICE=cuda`` asks for
  onnxruntime's CUDA provider when the ``onnxruntime-gpu`` build is installed). The graph has a
  fixed batch of 1, so batches run window by window.
* ``torch`` — the PyTorch ``kokoro`` package's ``KModel`` with weights rebuilt from the ONNX
  initialisers (:mod:`services.tts.torch_backend`); on CUDA it batches windows of several requests
  into one forward pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from services.tts.config import TTSSettings
from services.tts.feed import LOOKAHEAD_SEGMENTS, SegmentFeed
from services.tts.metrics import PHRASE_CACHE
from services.tts.normalize import normalize_for_speech, voice_language
from services.tts.phrase_cache import PhraseCache
from services.tts.scheduler import Scheduler, StreamTicket
from services.tts.segmenter import split_text

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 24000
"""Kokoro's output rate."""
MAX_PHONEMES = 510
"""Kokoro's context: phonemes per model pass (512 tokens with the two pads)."""
SENTENCE_PAUSE_S = 0.25
CLAUSE_PAUSE_S = 0.1

OPENAI_VOICE_ALIASES = {
    "alloy": "af_alloy",
    "echo": "am_echo",
    "fable": "bm_fable",
    "onyx": "am_onyx",
    "nova": "af_nova",
    "shimmer": "af_sky",
    "ash": "am_adam",
    "coral": "af_heart",
    "sage": "af_sarah",
    "ballad": "bm_george",
    "verse": "am_michael",
}
"""OpenAI voice names → Kokoro voices, so clients that only know OpenAI's names still work."""


class UnknownVoiceError(ValueError):
    """The requested voice is not in the voices file."""


@dataclass(frozen=True)
class InferItem:
    """One model pass: ``tokens`` (n,) int64 without the pad ids, ``style`` (1, 256) float32, ``speed``."""

    tokens: np.ndarray
    style: np.ndarray
    speed: float


class Backend(Protocol):
    """Runs Kokoro forward passes. ``infer`` returns float32 (m,) 24 kHz audio per item, in order."""

    name: str
    device: str

    def infer(self, items: list[InferItem]) -> list[np.ndarray]: ...


class OnnxBackend:
    """kokoro-onnx's ONNX graph on onnxruntime; one window per ``session.run`` (the graph's batch is 1).

    Raises:
        RuntimeError: ``device="cuda"`` but onnxruntime has no CUDA provider.
    """

    name = "onnx"

    def __init__(self, settings: TTSSettings) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = settings.threads
        opts.inter_op_num_threads = 1
        # Busy-waiting worker threads starve the other services sharing these cores.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers: list[Any] = ["CPUExecutionProvider"]
        if settings.device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError("TTS_DEVICE=cuda needs onnxruntime-gpu (no CUDAExecutionProvider)")
            providers = [("CUDAExecutionProvider", {"device_id": _cuda_index(settings.device)}), *providers]
        self.session = ort.InferenceSession(settings.model_path, sess_options=opts, providers=providers)
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        inputs = {i.name: i for i in self.session.get_inputs()}
        self._tokens_name = "input_ids" if "input_ids" in inputs else "tokens"
        self._speed_int = "int" in inputs["speed"].type

    def infer(self, items: list[InferItem]) -> list[np.ndarray]:
        """Run each item's window; see :class:`Backend`."""
        out = []
        for item in items:
            feeds = {
                self._tokens_name: np.array([[0, *item.tokens.tolist(), 0]], dtype=np.int64),
                "style": np.asarray(item.style, dtype=np.float32).reshape(1, -1),
                "speed": np.array(
                    [round(item.speed) if self._speed_int else item.speed],
                    dtype=np.int32 if self._speed_int else np.float32,
                ),
            }
            audio = self.session.run(None, feeds)[0]
            out.append(np.asarray(audio, dtype=np.float32).ravel())
        return out


def _cuda_index(device: str) -> int:
    return int(device.split(":", 1)[1]) if ":" in device else 0


@dataclass(frozen=True)
class SegmentJob:
    """A scheduler payload: normalised ``text`` in ``voice`` at ``speed``; ``pause`` adds trailing silence."""

    text: str
    voice: str
    speed: float
    pause: bool = True


class KokoroEngine:
    """Kokoro-82M shared by all requests, behind a :class:`~services.tts.scheduler.Scheduler`.

    Construction loads the model (blocking, ~1–2 s on CPU); call :meth:`start` on the event loop
    before synthesising and :meth:`stop` at shutdown.

    Raises:
        FileNotFoundError: at construction if the model or voices file is missing.
    """

    def __init__(self, settings: TTSSettings) -> None:
        from kokoro_onnx.tokenizer import Tokenizer

        for path in (settings.model_path, settings.voices_path):
            if not Path(path).is_file():
                raise FileNotFoundError(f"TTS file {path!r} is missing; run `make models`")
        started = time.perf_counter()
        self.settings = settings
        self.backend: Backend = _make_backend(settings)
        with np.load(settings.voices_path) as npz:
            self._styles: dict[str, np.ndarray] = {k: np.asarray(npz[k], dtype=np.float32) for k in npz.files}
        self.voices = sorted(self._styles)
        if settings.default_voice not in self._styles:
            raise UnknownVoiceError(settings.default_voice)
        self.tokenizer = Tokenizer(vocab=_onnx_vocab(self.backend) or {})
        max_chars = settings.phrase_cache_max_chars
        self.phrase_cache: PhraseCache[SegmentJob] = PhraseCache(
            lambda job: job if len(job.text) <= max_chars else None,
            int(settings.phrase_cache_mb * 1024 * 1024),
            on_lookup=lambda hit: PHRASE_CACHE.labels("hit" if hit else "miss").inc(),
        )
        self.scheduler: Scheduler[SegmentJob, np.ndarray] = Scheduler(
            self.render_batch,
            max_inflight=settings.max_inflight,
            max_batch=settings.max_batch,
            batch_wait_s=settings.batch_wait_ms / 1000.0,
            max_queue=settings.max_queue,
            on_batch=self._on_batch,
            cache=self.phrase_cache,
        )
        self.lookahead = LOOKAHEAD_SEGMENTS
        """Most segments of one request or WebSocket queued or running at once (:mod:`services.tts.feed`)."""
        self.segments_completed = 0
        """Segments whose synthesis finished (tests use it to check streaming order)."""
        self.batch_sizes: list[int] = []
        self.load_seconds = time.perf_counter() - started
        log.info(
            "loaded Kokoro (%s on %s) with %d voices in %.2fs",
            self.backend.name,
            self.backend.device,
            len(self.voices),
            self.load_seconds,
        )

    @property
    def sample_rate(self) -> int:
        """Output rate of :meth:`synthesize`, Hz."""
        return SAMPLE_RATE_HZ

    async def start(self, warmup: bool = True) -> None:
        """Start the scheduler's workers and (optionally) run one warm-up synthesis."""
        self.scheduler.start()
        if warmup:
            await self.scheduler.run(SegmentJob("Hello.", self.settings.default_voice, 1.0))

    async def stop(self) -> None:
        """Stop the workers; queued syntheses are cancelled."""
        await self.scheduler.stop()

    def resolve_voice(self, voice: str | None) -> str:
        """Voice name or OpenAI alias (``alloy``…) → Kokoro voice name.

        Raises:
            UnknownVoiceError: neither a Kokoro voice nor an alias of one.
        """
        name = voice or self.settings.default_voice
        name = OPENAI_VOICE_ALIASES.get(name, name)
        if name not in self._styles:
            raise UnknownVoiceError(voice)
        return name

    def _on_batch(self, size: int) -> None:
        self.batch_sizes.append(size)
        del self.batch_sizes[:-1000]

    # Blocking work (runs in scheduler threads) ---------------------------------------------------
    def _windows(self, job: SegmentJob) -> list[tuple[InferItem, float]]:
        """Phonemise a segment into ≤ 510-phoneme model windows, each with the pause after it (s)."""
        from kokoro_onnx.chunker import pause_after, split_phonemes

        lang = voice_language(job.voice) if job.voice[:1] not in "ab" else self.settings.lang
        phonemes = self.tokenizer.phonemize(job.text, lang)  # holds espeak-ng's lock
        phonemes = " ".join(phonemes.split())
        windows = split_phonemes(phonemes, MAX_PHONEMES)
        style = self._styles[job.voice]
        out = []
        for i, window in enumerate(windows):
            tokens = np.asarray(self.tokenizer.tokenize(window), dtype=np.int64)
            if tokens.size == 0:
                continue
            last = i == len(windows) - 1
            pause = pause_after(window, SENTENCE_PAUSE_S, CLAUSE_PAUSE_S) if (job.pause or not last) else 0.0
            row = style[min(tokens.size, len(style)) - 1]
            out.append((InferItem(tokens, row.reshape(1, -1), job.speed), pause))
        return out

    def render_batch(self, jobs: list[SegmentJob]) -> list[np.ndarray]:
        """Synthesise segments (blocking): float32 (n,) 24 kHz per job, in order; empty if unspeakable.

        All windows of all jobs go to the backend in one call so that a batching backend can run
        them in one forward pass.
        """
        from kokoro_onnx.trim import trim

        per_job = [self._windows(job) for job in jobs]
        flat = [item for windows in per_job for item, _ in windows]
        audios = iter(self.backend.infer(flat) if flat else [])
        results = []
        for windows in per_job:
            parts = []
            for _, pause in windows:
                audio, _ = trim(next(audios))
                parts.append(np.asarray(audio, dtype=np.float32))
                if pause:
                    parts.append(np.zeros(int(pause * SAMPLE_RATE_HZ), dtype=np.float32))
            results.append(np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32))
        self.segments_completed += len(jobs)
        return results

    # Async API ------------------------------------------------------------------------------------
    def submit_segment(
        self, text: str, voice: str, speed: float = 1.0, ticket: StreamTicket | None = None, pause: bool = True
    ) -> tuple[str, asyncio.Future[np.ndarray] | None]:
        """Normalise one segment and queue its synthesis without waiting.

        Returns:
            (the normalised text, a future of float32 (n,) 24 kHz audio — ``None`` if nothing
            speakable is left). Cancel the future to drop the job.
        Raises:
            QueueFullError: the queue is full.
        """
        spoken = normalize_for_speech(text, voice_language(voice))
        if not spoken:
            return spoken, None
        return spoken, self.scheduler.submit(SegmentJob(spoken, voice, speed, pause), ticket)

    async def synthesize_segment(
        self, text: str, voice: str, speed: float = 1.0, ticket: StreamTicket | None = None, pause: bool = True
    ) -> np.ndarray:
        """Normalise and speak one segment: float32 (n,) at 24 kHz ((0,) if nothing speakable).

        ``voice`` must already be resolved (:meth:`resolve_voice`). Raises
        :class:`~services.tts.scheduler.QueueFullError` when the queue is full.
        """
        spoken = normalize_for_speech(text, voice_language(voice))
        if not spoken:
            return np.zeros(0, dtype=np.float32)
        return await self.scheduler.run(SegmentJob(spoken, voice, speed, pause), ticket)

    def feed(self, voice: str, speed: float = 1.0, ticket: StreamTicket | None = None) -> SegmentFeed[SegmentJob]:
        """A :class:`~services.tts.feed.SegmentFeed` of one stream in ``voice`` (already resolved,
        :meth:`resolve_voice`) at ``speed``: at most ``self.lookahead`` segments queued at once."""
        return SegmentFeed(
            self.scheduler,
            lambda spoken, pause: SegmentJob(spoken, voice, speed, pause),
            self.lookahead,
            ticket,
            lang=voice_language(voice),
        )

    async def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0) -> np.ndarray:
        """Speak a whole text (split into segments, queued a few at a time): float32 (n,) at 24 kHz.

        Raises:
            UnknownVoiceError: ``voice`` is not available.
            QueueFullError: the queue is full before any segment got in.
        """
        feed = self.feed(self.resolve_voice(voice), speed)
        segments = split_text(text, 0, self.settings.segment_max_chars)
        items = [feed.add(s, pause=i < len(segments) - 1) for i, s in enumerate(segments)]
        try:
            feed.admit()
            parts = [await feed.result(item) for item in items]
        finally:
            feed.cancel()
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def _onnx_vocab(backend: Backend) -> dict[str, int] | None:
    """The phoneme vocabulary stored in the ONNX model's metadata, if any (else kokoro-onnx's default)."""
    from kokoro_onnx.session import embedded_vocab

    session = getattr(backend, "session", None)
    vocab: dict[str, int] | None = embedded_vocab(session) if session is not None else None
    return vocab or None


def _make_backend(settings: TTSSettings) -> Backend:
    if settings.backend == "torch":
        from services.tts.torch_backend import TorchBackend

        return TorchBackend(settings)
    return OnnxBackend(settings)
