"""LLM stand-in settings (env prefix ``LLM_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.config import DEFAULT_MODEL_ID, ServiceSettings, models_dir

__all__ = ["DEFAULT_MODEL_ID", "LLMSettings"]


class LLMSettings(ServiceSettings):
    """llama.cpp server settings for the CPU stand-in."""

    model_config = SettingsConfigDict(env_prefix="LLM_", env_file=".env", extra="ignore")

    port: int = 8000
    model_path: str = str(models_dir() / "llm" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    """GGUF model file."""
    served_model_name: str = DEFAULT_MODEL_ID
    """Model id on ``/v1/models`` (vLLM: ``--served-model-name``)."""
    n_ctx: int = 4096
    """Context window, tokens."""
    n_threads: int = 2
    """CPU threads for generation (one token at a time: memory-bound, and it runs while TTS renders the
    reply's first segment on the same cores)."""
    n_threads_batch: int = 0
    """CPU threads for prompt processing (compute-bound, before any TTS of the reply starts); 0 = ``n_threads``.
    On the 2-core box ``LLM_N_THREADS=1 LLM_N_THREADS_BATCH=2`` gave Kokoro's first segment a core:
    voice-to-voice p50 −3 %, p95 −10 % (docs/benchmarks.md, issue 13); not the default, as one thread
    decodes long replies and the post-call extraction more slowly."""
    cpu_nice: int = Field(default=10, ge=0, le=19)
    """Unix nice value of the stand-in, set at start (``shared/threads.py``; 0 = unchanged). On a CPU that
    the LLM shares with STT, TTS and the gateway, those go first: the reply's first segment is synthesised
    while the model writes the rest, and the caller hears the segment, not the text. On a 2-core box,
    11 runs interleaved: voice-to-voice p50 1938 → 1508 ms, p95 3334 → 2775 ms (docs/benchmarks.md, issue 13)."""
    chat_format: str = "chatml"
    """llama-cpp-python chat format; empty uses the GGUF's own template (Qwen's ChatML with Hermes-style tool calls)."""
    logits_all: bool = False
    """Keep every prompt token's logits (OpenAI ``logprobs``; llama-cpp-python's server default). Off,
    llama.cpp computes the output layer (152k-token vocabulary) for the last token only, and the prompt
    cache needs it off."""
    prompt_cache_mb: int = 128
    """RAM for saved prompt states (llama.cpp KV cache, ~13 KB per token: ~6 MB per turn), MB; 0 = off. A new
    request restores the saved state with the longest common token prefix (~30–90 ms), so a call's system
    prompt is not prefilled again after another prompt (the previous call's extraction) took the single slot
    (issue 13: first-turn TTFT 0.1–0.2 s instead of 0.3–1.1 s, docs/benchmarks.md)."""
