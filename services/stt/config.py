"""STT service settings (env prefix ``STT_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.config import ServiceSettings, models_dir


class STTSettings(ServiceSettings):
    """faster-whisper and batching-scheduler settings; every field reads ``STT_<NAME>`` from the env.

    ``model`` is a local CTranslate2 model folder or, on a host with internet, a faster-whisper
    size name such as ``base.en`` or ``large-v3-turbo``. The service refuses to start when it looks
    like a path and the folder lacks ``model.bin``.
    """

    model_config = SettingsConfigDict(env_prefix="STT_", env_file=".env", extra="ignore")

    port: int = 8001
    model: str = str(models_dir() / "whisper-tiny.en")
    model_name: str = "whisper-1"
    """The id served on ``/v1/models`` and accepted in the ``model`` form field (any id works)."""
    device: str = "cpu"
    """``cpu``, ``cuda`` or ``auto`` (CUDA when CTranslate2 sees a GPU)."""
    compute_type: str = "int8"
    """CTranslate2 compute type: ``int8`` (CPU), ``float16``/``int8_float16`` (GPU), ``default``…"""
    cpu_threads: int = 2
    """Intra-op threads of CTranslate2 on CPU."""
    blas_threads: int = Field(default=1, ge=1)
    """numpy's BLAS (OpenBLAS) threads in this process, set at start (threadpoolctl). Feature extraction
    and Smart Turn's Whisper features already run in the service's own thread pools; OpenBLAS's own
    threads (one per core by default) spin between calls: 25–30 % more CPU for the same requests on
    2 cores (docs/benchmarks.md), more on a host with many cores."""
    device_index: int = 0
    language: str | None = "en"
    """Default language when a request names none (``None``: detect, multilingual models only)."""
    multilingual_model: str | None = str(models_dir() / "whisper-base")
    """A second, multilingual model (CTranslate2 folder or size name) for requests in another language
    than ``model`` knows (``language=es``, or ``auto`` to detect): loaded beside ``model`` when its
    folder exists, so English calls keep the fast English-only model. Empty: none."""
    beam_size: int = 1
    max_audio_seconds: float = 120.0
    """Longer uploads are refused with 413."""

    batch_window_ms: float = Field(default=10.0, ge=0.0)
    """How long the scheduler waits, from the oldest queued request's arrival, to fill a batch."""
    max_batch: int = Field(default=0, ge=0)
    """Most 30 s windows in one batched ``generate``; 1 = the seeds' one-at-a-time design;
    0 = auto: 64 on CUDA (one batch costs little more than one window), 4 on CPU (the encoder
    dominates there and scales linearly with the batch, so big batches only add latency)."""
    max_queue: int = Field(default=256, ge=0)
    """Most requests waiting; one more is refused with 503 and ``Retry-After``."""
    encoder_batch: int = Field(default=0, ge=0)
    """Windows per encoder call inside a batch; 0 = auto (2 on CPU, whole batch on GPU)."""
    feature_threads: int = Field(default=0, ge=0)
    """Threads computing log-mel features of arriving requests (overlapping the GPU's batch);
    0 = auto: min(4, CPU cores). More threads mostly fight over the GIL."""
    initial_prompt: str | None = None
    """Default decoder prompt (vocabulary, spelling) for requests that send none."""
    hotwords: str | None = None
    """Hotwords/hint phrase prepended to every request's prompt (faster-whisper ``hotwords``)."""
    warmup: bool = True
    """Run one batched decode of silence before ``/ready`` turns 200."""
    ready_timeout_s: float = 120.0
    """How long a request that arrives during model load waits before a 503."""
    stream_interval_ms: float = Field(default=1000.0, gt=0.0)
    """WS ``/v1/audio/stream``: re-decode the growing buffer after this much new audio."""

    smart_turn_enabled: bool = True
    """Serve ``POST /v1/turn`` (Smart Turn v3 end-of-turn checks, batched across calls); the model
    loads at startup when the file exists, else the endpoint answers 503 and the service still runs."""
    smart_turn_model_path: str | None = None
    """Smart Turn ONNX; defaults to ``models/smart-turn/smart-turn-v3.2-cpu.onnx``."""
    turn_batch_wait_ms: float = Field(default=3.0, ge=0.0)
    """How long a turn check waits, from the oldest queued check's arrival, for others to share its batch."""
    turn_max_batch: int = Field(default=16, ge=1)
    """Most turn checks in one ONNX run."""
    turn_max_queue: int = Field(default=256, ge=0)
    """Most turn checks waiting; one more is refused with 503 and ``Retry-After``."""
    turn_threads: int = Field(default=2, ge=1)
    """Intra-op threads of Smart Turn on the CPU provider (CUDA is used when onnxruntime offers it
    and ``STT_DEVICE`` is not ``cpu``)."""
    turn_device: str = ""
    """Where Smart Turn runs: empty = as ``STT_DEVICE``; ``cpu`` keeps it on the host's cores while
    Whisper runs on the GPU (to compare the two, docs/benchmarks.md)."""
