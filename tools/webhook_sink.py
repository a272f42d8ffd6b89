"""A tiny webhook receiver for development and tests: keeps what it receives in memory.

``POST /webhook`` stores the JSON body; ``GET /webhooks`` lists them (newest last);
``GET /health``. Run: ``python -m tools.webhook_sink`` (``WEBHOOK_SINK_PORT``, default 8090).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import uvicorn
from fastapi import FastAPI, Request

log = logging.getLogger("webhook-sink")


def create_app() -> FastAPI:
    """The receiver app."""
    app = FastAPI(title="webhook sink")
    received: list[dict[str, Any]] = []

    @app.post("/webhook")
    async def webhook(request: Request) -> dict[str, str]:
        body = await request.json()
        received.append(body)
        log.info(
            "received %s for call %s (%d turns)", body.get("event"), body.get("call_sid"), len(body.get("turns", []))
        )
        return {"status": "ok"}

    @app.get("/webhooks")
    async def webhooks() -> list[dict[str, Any]]:
        return received

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


if __name__ == "__main__":
    from shared.logs import setup_logging

    setup_logging("webhook")
    uvicorn.run(
        create_app(),
        host="127.0.0.1",
        port=int(os.environ.get("WEBHOOK_SINK_PORT", "8090")),
        log_config=None,
        log_level="warning",
    )
