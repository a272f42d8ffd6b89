"""Prometheus helpers: serve ``GET /metrics`` on a FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def mount_metrics(app: FastAPI) -> None:
    """Serve the process's default registry at ``GET /metrics`` (text exposition format, no redirect)."""

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
