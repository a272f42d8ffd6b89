"""Composition root of the TTS service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.tts.config import TTSSettings
from services.tts.metrics import INFLIGHT, QUEUE_DEPTH
from services.tts.routes import router
from services.tts.streaming import router as stream_router
from shared.errors import install_error_handlers
from shared.metrics import mount_metrics


def create_app(settings: TTSSettings | None = None) -> FastAPI:
    """Build the app; Kokoro loads in the lifespan (onto ``app.state.engine``), not at import.

    Routes: ``POST /v1/audio/speech``, ``WS /v1/audio/speech/stream``, ``GET /v1/audio/voices``,
    ``/health``, ``/ready``, ``/gpu``, ``/metrics``.
    """
    settings = settings or TTSSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from services.tts.engine import KokoroEngine

        engine = await asyncio.to_thread(KokoroEngine, settings)
        await engine.start()
        QUEUE_DEPTH.set_function(lambda: engine.scheduler.depth)
        INFLIGHT.set_function(lambda: engine.scheduler.inflight)
        app.state.engine = engine
        try:
            yield
        finally:
            await engine.stop()

    app = FastAPI(title="Switchboard TTS", version="0.2.0", lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(stream_router)
    mount_metrics(app)
    return app
