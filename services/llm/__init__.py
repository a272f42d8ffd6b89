"""LLM service configuration.

Production runs vLLM's OpenAI-compatible server (stock image, configured in ``compose.yaml``).
Where vLLM cannot run (no GPU), this package starts the CPU stand-in: llama-cpp-python's
OpenAI-compatible server with the project's GGUF model — the same ``/v1/chat/completions`` API.
"""

from services.llm.app import create_app

__all__ = ["create_app"]
