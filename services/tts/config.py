"""TTS service settings (env prefix ``TTS_``)."""

from __future__ import annotations

from typing import Literal

from pydantic_settings import SettingsConfigDict

from shared.config import ServiceSettings, models_dir


class TTSSettings(ServiceSettings):
    """Kokoro-82M settings. Every field reads ``TTS_<FIELD>`` from the environment or ``.env``."""

    model_config = SettingsConfigDict(env_prefix="TTS_", env_file=".env", extra="ignore")

    port: int = 8002
    model_path: str = str(models_dir() / "kokoro" / "kokoro-v1.0.int8.onnx")
    voices_path: str = str(models_dir() / "kokoro" / "voices-v1.0.bin")
    default_voice: str = "af_heart"
    lang: str = "en-us"
    threads: int = 2
    """onnxruntime intra-op threads per synthesis."""
    max_input_chars: int = 4096
    """``POST /v1/audio/speech`` inputs longer than this get 413; also the WebSocket's buffered-text limit."""

    backend: Literal["onnx", "torch"] = "onnx"
    """``onnx``: kokoro-onnx int8 graph (CPU). ``torch``: PyTorch ``kokoro`` KModel with weights rebuilt
    from the ONNX initialisers (GPU path; needs ``torch``, ``transformers`` and ``kokoro`` installed)."""
    device: str = "cpu"
    """``cpu`` or ``cuda`` / ``cuda:N`` (torch backend; onnx backend with onnxruntime-gpu)."""
    torch_weights_path: str = str(models_dir() / "kokoro" / "kokoro-v1.0-from-onnx.pt")
    """Cache of the rebuilt PyTorch state dict; built from ``model_path`` on first use if missing."""
    torch_dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    max_inflight: int = 1
    """Batches synthesised at once (worker threads). On CPU, 1 × ``threads`` cores is best."""
    max_batch: int = 1
    """Segments per forward pass (torch backend on GPU; the ONNX graph's batch is fixed at 1)."""
    batch_wait_ms: float = 5.0
    """How long a worker waits for more segments to fill a batch, ms."""
    max_queue: int = 64
    """Segments allowed to wait; beyond that requests get 503 with ``Retry-After``."""

    segment_max_chars: int = 300
    """Longest segment (characters) sent to the model in one pass; longer runs are cut at a clause/space."""
    first_clause_chars: int = 4
    """Streaming: the first segment of a turn may end at a comma once it has this many characters
    ("Sure," is spoken while the rest of the sentence is still being generated; 24 before issue 13:
    voice-to-voice p50 −21 % on the CPU stack, docs/benchmarks.md)."""
    first_phrase_words: int = 4
    """Streaming: a first sentence with no early comma may end its first segment at a word boundary once it
    has this many words ("A repair usually costs", then "150 to 300 dollars."; rules in
    ``services/tts/segmenter.py``; issue 13: TTS first audio p50 −36 % on the CPU stack,
    docs/benchmarks.md); 0 = off."""
    phrase_cache_mb: float = 32.0
    """Audio of repeated segments kept in RAM (the greeting, re-prompts, openers such as "Sure,"): a
    cached segment is answered without synthesis (``services/tts/phrase_cache.py``); 0 = off."""
    phrase_cache_max_chars: int = 120
    """Only segments of at most this many characters (after normalisation) are cached."""
