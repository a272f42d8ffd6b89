"""One logging format for every service, readable when `make dev` interleaves them."""

from __future__ import annotations

import logging
import os


def setup_logging(service: str, level: str | None = None) -> None:
    """Configure the root logger: ``HH:MM:SS level service logger: message``."""
    lvl = (level or os.environ.get("LOG_LEVEL", "info")).upper()
    logging.basicConfig(
        level=lvl,
        format=f"%(asctime)s %(levelname)-5s {service} %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    # One line per outbound HTTP request is noise at info level.
    logging.getLogger("httpx").setLevel(logging.WARNING)
