"""``python -m services.tts``: serve the TTS app with uvicorn on ``TTS_HOST:TTS_PORT``."""

from __future__ import annotations

from services.tts.config import TTSSettings
from shared.serve import serve


def main() -> None:
    """Run the service in the foreground."""
    serve("tts", "services.tts:create_app", TTSSettings())


if __name__ == "__main__":
    main()
