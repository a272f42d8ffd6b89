"""Text-to-speech service: Kokoro-82M behind an OpenAI-compatible speech API."""

from services.tts.app import create_app

__all__ = ["create_app"]
