"""Run a service's app factory with uvicorn in the foreground (every ``python -m <service>``)."""

from __future__ import annotations

from typing import Any

import uvicorn

from shared.config import ServiceSettings
from shared.logs import setup_logging


def serve(name: str, factory: str, settings: ServiceSettings, **uvicorn_options: Any) -> None:
    """Log as ``name`` and serve ``factory`` (``"package:create_app"``) on ``settings.host:port``.

    ``uvicorn_options`` go to :func:`uvicorn.run` as they are (e.g. ``ws_max_size`` in bytes,
    ``timeout_graceful_shutdown`` in seconds).
    """
    setup_logging(name, settings.log_level)
    uvicorn.run(
        factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,
        **uvicorn_options,
    )
