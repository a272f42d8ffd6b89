"""Speech-to-text service: faster-whisper behind an OpenAI-compatible transcription API.

``create_app`` is imported lazily so that ``services.stt.engine`` and ``services.stt.scheduler``
can be used (benchmarks on a GPU box) without FastAPI installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.stt.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from services.stt.app import create_app

        return create_app
    raise AttributeError(name)
