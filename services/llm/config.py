"""LLM stand-in settings (env prefix ``LLM_``)."""

from __future__ import annotations

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
    """CPU threads for generation and prompt processing."""
    chat_format: str = "chatml"
    """llama-cpp-python chat format; empty uses the GGUF's own template (Qwen's ChatML with Hermes-style tool calls)."""
