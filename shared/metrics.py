"""Prometheus helpers: serve ``GET /metrics`` on a FastAPI app."""

from __future__ import annotations

import os

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus-client's multiprocess mode: each process writes its values to files in this folder."""


def mount_metrics(app: FastAPI) -> None:
    """Serve ``GET /metrics`` (text exposition format, no redirect).

    One process: its default registry. Under ``PROMETHEUS_MULTIPROC_DIR`` (several uvicorn workers,
    ``GATEWAY_WORKERS``): the values every process of the folder wrote, summed by
    :class:`prometheus_client.multiprocess.MultiProcessCollector` (gauges per process, labelled ``pid``).
    """

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
