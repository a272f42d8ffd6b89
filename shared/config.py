"""Settings helpers shared by every service (pydantic-settings).

Each service defines its own ``BaseSettings`` subclass with an env prefix (``STT_``, ``TTS_``,
``LLM_``, ``GATEWAY_``); this module holds what they have in common.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_MODEL_ID = "qwen2.5-0.5b-instruct"
"""The model id the LLM serves (the CPU stand-in, and vLLM's ``--served-model-name``) and the
gateway asks for: one name in both."""


def models_dir() -> Path:
    """Where ``make models`` caches model artifacts: ``$SWITCHBOARD_MODELS_DIR`` or ``./models``."""
    return Path(os.environ.get("SWITCHBOARD_MODELS_DIR", PROJECT_ROOT / "models"))


class ServiceSettings(BaseSettings):
    """Fields every HTTP service has. Subclasses set ``env_prefix`` and their default port."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    """Interface to bind (``0.0.0.0`` in containers)."""
    port: int
    """TCP port."""
    log_level: str = "info"
    """debug, info, warning or error."""
