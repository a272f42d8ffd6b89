"""Composition root of the STT service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.stt.config import STTSettings
from services.stt.routes import router
from services.stt.streaming import router as stream_router
from services.stt.turn_routes import router as turn_router
from shared.errors import install_error_handlers
from shared.metrics import mount_metrics


def create_app(settings: STTSettings | None = None) -> FastAPI:
    """Build the app; the model loads in the lifespan (background thread), not at import.

    Raises (at startup, from the lifespan):
        FileNotFoundError: the model folder named by ``STT_MODEL`` is missing.
    A missing Smart Turn model does not stop the service: ``POST /v1/turn`` answers 503.
    """
    settings = settings or STTSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from services.stt.service import STTService
        from services.stt.turn_batching import TurnService
        from shared.threads import limit_blas_threads

        limit_blas_threads(settings.blas_threads)

        service = STTService(settings)  # raises FileNotFoundError: refuse to start
        app.state.stt = service
        service.start()
        app.state.turn = turn = await TurnService.load(settings)  # never raises: /v1/turn answers 503
        try:
            yield
        finally:
            await turn.close()
            await service.close()

    app = FastAPI(title="Switchboard STT", version="0.2.0", lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(stream_router)
    app.include_router(turn_router)
    mount_metrics(app)
    return app
