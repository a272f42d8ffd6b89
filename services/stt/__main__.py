"""``python -m services.stt``: serve the STT app with uvicorn on ``STT_HOST:STT_PORT``."""

from __future__ import annotations

import logging
import sys

from services.stt.config import STTSettings
from services.stt.engine import resolve_model
from shared.serve import serve


def main() -> None:
    """Run the service in the foreground; exit 2 with a clear message if the model is missing."""
    settings = STTSettings()
    try:
        resolve_model(settings.model)
    except FileNotFoundError as exc:
        logging.basicConfig()
        logging.getLogger("services.stt").error("%s", exc)
        sys.exit(2)
    serve("stt", "services.stt:create_app", settings)


if __name__ == "__main__":
    main()
