"""The faster-whisper engine: features per request, one batched CTranslate2 ``generate`` per batch.

Whisper pads every input to a 30 s window (3000 mel frames), so a 3 s utterance costs nearly a
full window of encoder work; stacking many callers' windows into one ``encode`` + ``generate``
call is where throughput comes from on a GPU. The batched path follows faster-whisper 1.2.1's
``BatchedInferencePipeline.generate_segment_batched`` / ``forward``
(``faster_whisper/transcribe.py``, MIT): same prompt construction (``WhisperModel.get_prompt``),
same average-log-probability formula, the model's own ``_split_segments_by_timestamps`` and
``add_word_timestamps``, and the no-speech rule of ``WhisperModel.generate_segments``.

Differences from faster-whisper's sequential ``transcribe``: one temperature per batch (no
temperature fallback) and no ``condition_on_previous_text`` across 30 s windows; audio longer than
one window is cut at silences found by Silero VAD (faster-whisper's ``get_speech_timestamps``).

Nothing heavy happens at import: faster-whisper is imported when the engine is built.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.stt import metrics
from services.stt.config import STTSettings

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
"""Whisper's input rate."""
WINDOW_SECONDS = 30.0
"""Whisper's fixed input window."""
TOKENS_PER_SECOND = 12.0
"""Decode budget per second of audio (fast speech is ≈ 5 text tokens/s plus timestamp tokens);
bounds the batch's ``max_length`` so one hallucinating window cannot run to 448 tokens."""
NO_SPEECH_THRESHOLD = 0.6
LOG_PROB_THRESHOLD = -1.0
"""A window is dropped as silence when ``no_speech_prob > 0.6`` and ``avg_logprob < -1.0``
(faster-whisper's / OpenAI Whisper's defaults)."""
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


def resolve_model(model: str) -> str:
    """Return the model path or size name to load.

    Raises:
        FileNotFoundError: ``model`` looks like a path (has a separator or starts with ``.``) but
            the folder has no ``model.bin`` — run ``make models`` or set ``STT_MODEL``.
    """
    if "/" in model or model.startswith("."):
        if not (Path(model) / "model.bin").is_file():
            raise FileNotFoundError(
                f"STT model folder {model!r} is missing model.bin; run `make models` or set STT_MODEL "
                "(a local CTranslate2 folder or a faster-whisper size name such as base.en)"
            )
    return model


@dataclass(frozen=True)
class DecodeOptions:
    """Per-request decoding options; requests are batched only with identical options.

    CTranslate2 needs ``<|startoftranscript|>`` at the same position in every prompt of a batch,
    so the prompt text is part of the key (hashable, used as the scheduler's grouping key).

    Attributes:
        language: ISO code (``"en"``) or ``None`` to detect (multilingual models only).
        prompt: previous-text prompt (vocabulary, spelling), or ``None``.
        hotwords: hint phrase placed before the prompt, or ``None``.
        temperature: sampling temperature; 0 = greedy/beam search.
        timestamps: decode timestamp tokens (segment start/end); off for plain text.
        word_timestamps: align words with cross-attention (implies ``timestamps``).
    """

    language: str | None = None
    prompt: str | None = None
    hotwords: str | None = None
    temperature: float = 0.0
    timestamps: bool = False
    word_timestamps: bool = False


@dataclass(frozen=True)
class Word:
    """One aligned word; times in seconds from the start of the request's audio."""

    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class Segment:
    """One decoded segment (OpenAI ``verbose_json`` fields); times in seconds."""

    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[Word] | None = None


@dataclass(frozen=True)
class Result:
    """A request's transcript.

    Attributes:
        text: the whole transcript, segments joined by spaces.
        language: ISO code used or detected.
        audio_seconds: input duration, s.
        segments: decoded segments (empty when the audio held no speech).
        batch_size: windows in the batched ``generate`` that produced it.
        elapsed_seconds: wall time of that batch (encode + generate + post-processing), s.
    """

    text: str
    language: str
    audio_seconds: float
    segments: list[Segment]
    batch_size: int = 1
    elapsed_seconds: float = 0.0


@dataclass(eq=False)
class Prepared:
    """A request ready for the GPU: its audio cut into ≤ 30 s windows and turned into features.

    Attributes:
        features: float32, shape (k, n_mels, 3000): k log-mel windows padded to 30 s.
        windows: k (offset_s, duration_s) pairs locating each window in the request's audio.
        audio_seconds: the request's duration, s.
        options: decoding options (the batching key).
    """

    features: np.ndarray
    windows: list[tuple[float, float]]
    audio_seconds: float
    options: DecodeOptions = field(default_factory=DecodeOptions)

    @property
    def size(self) -> int:
        """Number of 30 s windows (what it adds to a batch)."""
        return len(self.windows)


def speech_windows(audio: np.ndarray, max_seconds: float = WINDOW_SECONDS) -> list[tuple[int, int]]:
    """Cut long audio into ≤ ``max_seconds`` windows at silences (Silero VAD via faster-whisper).

    Args:
        audio: float32 mono 16 kHz, shape (n,).
        max_seconds: longest window, s.
    Returns:
        (start, end) sample indices of windows, in order; ``[(0, n)]`` when the audio fits one
        window; ``[]`` when long audio holds no speech.
    """
    n = int(audio.shape[0])
    limit = int(max_seconds * SAMPLE_RATE_HZ)
    if n <= limit:
        return [(0, n)]
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    clips = get_speech_timestamps(audio, VadOptions(max_speech_duration_s=max_seconds, min_silence_duration_ms=160))
    windows: list[tuple[int, int]] = []
    for clip in clips:
        start, end = int(clip["start"]), int(clip["end"])
        if windows and end - windows[-1][0] <= limit:
            windows[-1] = (windows[-1][0], end)  # keep the silence between clips: original timing
        else:
            windows.append((start, min(end, start + limit)))
    return windows


class UnsupportedLanguageError(ValueError):
    """A request named a language the model cannot transcribe.

    Attributes:
        language: the value the request sent.
        supported: the codes the model knows (``["en"]`` for an English-only ``.en`` model).
    """

    def __init__(self, language: str, supported: list[str]) -> None:
        if supported == ["en"]:
            message = f"unsupported language {language!r}: this model is English-only, use 'en'"
        else:
            message = f"unsupported language {language!r}; use an ISO-639-1 code: {', '.join(supported)}"
        super().__init__(message)
        self.language = language
        self.supported = supported


class WhisperEngine:
    """One faster-whisper ``WhisperModel`` shared by every request through batched decoding.

    Thread-safety: :meth:`prepare` may run on any thread; :meth:`run_batch` must be called from
    one thread at a time (the scheduler's worker).

    Args:
        settings: model, device, compute type, threads, default language/prompt/hotwords.
    Raises:
        FileNotFoundError: the model folder is missing (see :func:`resolve_model`).
    """

    def __init__(self, settings: STTSettings) -> None:
        import ctranslate2
        from faster_whisper import WhisperModel

        self.settings = settings
        device = settings.device
        if device == "auto":
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        self.device = device
        started = time.perf_counter()
        self.model = WhisperModel(
            resolve_model(settings.model),
            device=device,
            device_index=settings.device_index,
            compute_type=settings.compute_type,
            cpu_threads=settings.cpu_threads,
        )
        self.load_seconds = time.perf_counter() - started
        self.multilingual = bool(self.model.model.is_multilingual)
        enc = settings.encoder_batch or (2 if device == "cpu" else 0)
        self.encoder_batch = enc
        threads = settings.feature_threads or min(4, os.cpu_count() or 1)
        self._feature_pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="stt-features")
        self.last_stages: dict[str, float] = {}
        """Seconds of each stage of the last :meth:`run_batch` (setup/encode/generate/post)."""
        log.info(
            "loaded %s on %s/%s in %.2fs (multilingual=%s)",
            settings.model,
            device,
            settings.compute_type,
            self.load_seconds,
            self.multilingual,
        )

    # ----------------------------------------------------------------------------- preparing
    @property
    def languages(self) -> list[str]:
        """Language codes the model transcribes: Whisper's 100 (``faster_whisper.tokenizer``) for a
        multilingual model, ``["en"]`` for an English-only ``.en`` one."""
        return list(self.model.supported_languages)

    def check_language(self, language: str | None) -> str | None:
        """A request's ``language``, lower-cased, or ``None`` (blank: the service default); ``auto``
        (detect) on a multilingual model.

        Raises:
            UnsupportedLanguageError: the model does not know the code (``klingon``; anything but
                ``en`` on an English-only model).
        """
        code = (language or "").strip().lower()
        if not code:
            return None
        if code == "auto" and self.multilingual:
            return "auto"  # detect (see default_options)
        if code not in self.languages:
            raise UnsupportedLanguageError(language or "", self.languages)
        return code

    def default_options(self, **overrides: Any) -> DecodeOptions:
        """Options with the service defaults (language, initial prompt, hotwords) filled in.

        ``overrides`` set to ``None`` fall back to the settings' defaults.
        """
        s = self.settings
        values: dict[str, Any] = {"language": s.language, "prompt": s.initial_prompt, "hotwords": s.hotwords}
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values.get("language") == "auto":
            values["language"] = None  # detect
        if values.get("word_timestamps"):
            values["timestamps"] = True
        if not self.multilingual:
            if values.get("language") not in (None, "en"):
                log.warning("model is English-only; language %r decoded as 'en'", values["language"])
            values["language"] = "en"
        return DecodeOptions(**values)

    def prepare(self, audio: np.ndarray, options: DecodeOptions | None = None) -> Prepared:
        """Window the audio and compute log-mel features (CPU, ≈ 2 ms per second of audio).

        Args:
            audio: float32 mono 16 kHz, shape (n,), values in [-1, 1].
            options: decoding options; default: :meth:`default_options`.
        Returns:
            a :class:`Prepared` with features of shape (k, n_mels, 3000), k ≥ 0 (0 only for long
            audio without speech).
        """
        from faster_whisper.audio import pad_or_trim

        started = time.perf_counter()
        audio = np.asarray(audio, dtype=np.float32)
        feats, windows = [], []
        for start, end in speech_windows(audio):
            chunk = audio[start:end]
            feats.append(pad_or_trim(self.model.feature_extractor(chunk)[..., :-1]))
            windows.append((start / SAMPLE_RATE_HZ, (end - start) / SAMPLE_RATE_HZ))
        n_mels = self.model.feature_extractor.mel_filters.shape[0]
        features = np.stack(feats) if feats else np.zeros((0, n_mels, 3000), dtype=np.float32)
        metrics.STAGE_SECONDS.labels("features").observe(time.perf_counter() - started)
        return Prepared(features, windows, audio.shape[0] / SAMPLE_RATE_HZ, options or self.default_options())

    async def prepare_async(self, audio: np.ndarray, options: DecodeOptions | None = None) -> Prepared:
        """:meth:`prepare` on the engine's feature thread pool (``STT_FEATURE_THREADS``)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._feature_pool, self.prepare, audio, options)

    def close(self) -> None:
        """Stop the feature thread pool (the model is freed with the engine)."""
        self._feature_pool.shutdown(wait=False, cancel_futures=True)

    # ----------------------------------------------------------------------------- decoding
    def _encode(self, features: np.ndarray) -> Any:
        """Encoder over (B, n_mels, 3000) float32 features → a CTranslate2 StorageView.

        On CPU the batch is encoded in sub-batches of ``encoder_batch`` (one big CPU encode is
        slower per window than a few small ones: cache pressure) and concatenated.
        """
        import ctranslate2

        b = features.shape[0]
        if self.encoder_batch <= 0 or b <= self.encoder_batch or self.device != "cpu":
            return self.model.encode(features)
        parts = [
            np.array(self.model.encode(features[i : i + self.encoder_batch])) for i in range(0, b, self.encoder_batch)
        ]
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.concatenate(parts)))

    def run_batch(self, items: list[Prepared]) -> list[Result]:
        """Transcribe requests that share one :class:`DecodeOptions` in one batched ``generate``.

        Args:
            items: prepared requests, all with equal ``options``; their windows are stacked into
                one batch of B = Σ k_i windows, shape (B, n_mels, 3000).
        Returns:
            one :class:`Result` per item, in order.
        Raises:
            ValueError: the items' options differ.
        """
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

        if not items:
            return []
        opts = items[0].options
        if any(it.options != opts for it in items):
            raise ValueError("run_batch needs items with identical DecodeOptions")
        started = time.perf_counter()
        windows = [(i, off, dur) for i, it in enumerate(items) for off, dur in it.windows]
        if not windows:
            return [Result("", opts.language or "en", it.audio_seconds, []) for it in items]
        features = np.concatenate([it.features for it in items if it.size])
        model = self.model
        tokenizer = Tokenizer(model.hf_tokenizer, self.multilingual, task="transcribe", language=opts.language or "en")
        prompt = model.get_prompt(
            tokenizer,
            previous_tokens=tokenizer.encode(" " + opts.prompt.strip()) if opts.prompt else [],
            without_timestamps=not opts.timestamps,
            hotwords=opts.hotwords,
        )
        t_encode = time.perf_counter()
        encoder_output = self._encode(features)
        t_generate = time.perf_counter()
        prompts = [list(prompt) for _ in windows]
        languages = [opts.language or "en"] * len(windows)
        if opts.language is None and self.multilingual:
            lang_index = prompt.index(tokenizer.language)
            for j, probs in enumerate(model.model.detect_language(encoder_output)):
                token = probs[0][0]
                prompts[j][lang_index] = tokenizer.tokenizer.token_to_id(token)
                languages[j] = token[2:-2]
        longest = max(dur for _, _, dur in windows)
        max_length = min(model.max_length, len(prompt) + math.ceil(longest * TOKENS_PER_SECOND) + 24)
        sampling: dict[str, Any] = (
            {"beam_size": 1, "sampling_topk": 0, "sampling_temperature": opts.temperature}
            if opts.temperature > 0
            else {"beam_size": self.settings.beam_size}
        )
        outputs = model.model.generate(
            encoder_output,
            prompts,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            **sampling,
        )
        t_post = time.perf_counter()
        per_window: list[list[dict[str, Any]]] = []
        stats: list[tuple[float, float]] = []
        sizes: list[int] = []
        for (_, off, dur), out in zip(windows, outputs, strict=True):
            tokens = out.sequences_ids[0]
            avg_logprob = out.scores[0] * len(tokens) / (len(tokens) + 1)
            stats.append((avg_logprob, out.no_speech_prob))
            size = int(math.ceil(dur) * model.frames_per_second)
            sizes.append(size)
            if out.no_speech_prob > NO_SPEECH_THRESHOLD and avg_logprob < LOG_PROB_THRESHOLD:
                per_window.append([])
                continue
            subs, _, _ = model._split_segments_by_timestamps(
                tokenizer=tokenizer,
                tokens=tokens,
                time_offset=off,
                segment_size=size,
                segment_duration=dur,
                seek=0,
            )
            per_window.append([s for s in subs if s["tokens"]])
        if opts.word_timestamps:
            model.add_word_timestamps(
                per_window,
                tokenizer,
                encoder_output,
                sizes,
                PREPEND_PUNCTUATIONS,
                APPEND_PUNCTUATIONS,
                0.0,
            )
        elapsed = time.perf_counter() - started
        self.last_stages = {
            "setup": t_encode - started,
            "encode": t_generate - t_encode,
            "generate": t_post - t_generate,
            "post": started + elapsed - t_post,
        }
        for stage, seconds in self.last_stages.items():
            metrics.STAGE_SECONDS.labels(stage).observe(seconds)
        segments: list[list[Segment]] = [[] for _ in items]
        first_lang: dict[int, str] = {}
        for (i, off, _), subs, (avg, nsp), lang in zip(windows, per_window, stats, languages, strict=True):
            first_lang.setdefault(i, lang)
            for sub in subs:
                text = tokenizer.decode(sub["tokens"])
                words = None
                if opts.word_timestamps:
                    words = [
                        Word(w["word"], round(float(w["start"]), 3), round(float(w["end"]), 3), float(w["probability"]))
                        for w in sub.get("words", [])
                    ]
                segments[i].append(
                    Segment(
                        id=len(segments[i]),
                        seek=int(off * model.frames_per_second),
                        start=round(float(sub["start"]), 3),
                        end=round(float(sub["end"]), 3),
                        text=text,
                        tokens=[int(t) for t in sub["tokens"]],
                        temperature=opts.temperature,
                        avg_logprob=float(avg),
                        compression_ratio=float(get_compression_ratio(text)),
                        no_speech_prob=float(nsp),
                        words=words,
                    )
                )
        return [
            Result(
                text=" ".join(s.text.strip() for s in segs).strip(),
                language=first_lang.get(i, opts.language or "en"),
                audio_seconds=it.audio_seconds,
                segments=segs,
                batch_size=len(windows),
                elapsed_seconds=elapsed,
            )
            for i, (it, segs) in enumerate(zip(items, segments, strict=True))
        ]

    # ----------------------------------------------------------------------------- helpers
    def warmup(self, batch: int = 2) -> float:
        """Decode ``batch`` windows of 1 s silence once (allocations, kernels); returns seconds."""
        started = time.perf_counter()
        silence = np.zeros(SAMPLE_RATE_HZ, dtype=np.float32)
        opts = self.default_options()
        self.run_batch([self.prepare(silence, opts) for _ in range(max(1, batch))])
        return time.perf_counter() - started
