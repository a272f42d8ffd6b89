"""The STT service's runtime state: engine + scheduler, loaded in the background after startup.

``GET /health`` answers as soon as the process serves HTTP; the model loads and warms up on a
worker thread, and ``GET /ready`` turns 200 when both are done. Requests that arrive meanwhile
wait (up to ``STT_READY_TIMEOUT_S``) instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from services.stt.config import STTSettings
from services.stt.engine import WhisperEngine, resolve_model
from services.stt.scheduler import BatchScheduler
from shared.errors import APIError

log = logging.getLogger(__name__)


class STTService:
    """Holds the engine and scheduler of one app (``app.state.stt``).

    Args:
        settings: service settings.
    Raises:
        FileNotFoundError: at construction, when ``settings.model`` is a missing folder — the
            service refuses to start rather than fail on the first call.
    """

    def __init__(self, settings: STTSettings) -> None:
        resolve_model(settings.model)
        self.settings = settings
        self.engine: WhisperEngine | None = None
        self.scheduler: BatchScheduler | None = None
        self.multilingual: tuple[WhisperEngine, BatchScheduler] | None = None
        """The second model, for other languages than ``engine`` knows (``STT_MULTILINGUAL_MODEL``)."""
        self.ready = asyncio.Event()
        self.error: str | None = None
        self.load_seconds: float | None = None
        self.warmup_seconds: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin loading on the running loop (returns at once)."""
        self._task = asyncio.create_task(self._load(), name="stt-load")

    async def _load(self) -> None:
        s = self.settings
        try:
            started = time.perf_counter()
            engine = await asyncio.to_thread(WhisperEngine, s)
            self.load_seconds = time.perf_counter() - started
            if s.warmup:
                self.warmup_seconds = await asyncio.to_thread(engine.warmup, 2)
            max_batch = s.max_batch or (64 if engine.device == "cuda" else 4)
            scheduler = BatchScheduler(
                engine.run_batch, max_batch=max_batch, batch_window_ms=s.batch_window_ms, max_queue=s.max_queue
            )
            scheduler.start()
            self.engine, self.scheduler = engine, scheduler
            if not engine.multilingual and self._multilingual_path() is not None:
                ml = await asyncio.to_thread(WhisperEngine, s.model_copy(update={"model": self._multilingual_path()}))
                if s.warmup:
                    await asyncio.to_thread(ml.warmup, 1)
                ml_scheduler = BatchScheduler(
                    ml.run_batch, max_batch=max_batch, batch_window_ms=s.batch_window_ms, max_queue=s.max_queue
                )
                ml_scheduler.start()
                self.multilingual = (ml, ml_scheduler)
            self.ready.set()
            log.info(
                "ready: load %.2fs, warm-up %.2fs, max_batch=%d, window=%.0fms",
                self.load_seconds,
                self.warmup_seconds or 0.0,
                max_batch,
                s.batch_window_ms,
            )
        except Exception as exc:
            self.error = f"model load failed: {exc}"
            log.exception("STT model load failed")

    def _multilingual_path(self) -> str | None:
        """``STT_MULTILINGUAL_MODEL`` if set and (when a path) present."""
        path = self.settings.multilingual_model
        if not path:
            return None
        if ("/" in path or path.startswith(".")) and not (Path(path) / "model.bin").is_file():
            return None
        return path

    async def wait_ready(self, language: str | None = None) -> tuple[WhisperEngine, BatchScheduler]:
        """Return (engine, scheduler) for ``language`` — the multilingual model for a language the main
        model does not know, or ``auto`` (detect) — waiting for the load if it is still running.

        Raises:
            APIError: 503 (``Retry-After``) when the load failed or took longer than
                ``ready_timeout_s``.
        """
        if not self.ready.is_set() and self.error is None and self._task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.ready_timeout_s):
                    await asyncio.shield(self._task)
        if self.engine is None or self.scheduler is None:
            raise APIError(
                503,
                self.error or "the STT model is still loading",
                type="server_error",
                code="model_not_ready",
                headers={"Retry-After": "5"},
            )
        code = (language or "").strip().lower()
        if self.multilingual is not None and code and (code == "auto" or code not in self.engine.languages):
            return self.multilingual
        return self.engine, self.scheduler

    async def close(self) -> None:
        """Stop the scheduler (queued requests fail) and any load in progress."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self.scheduler is not None:
            await self.scheduler.close()
        if self.engine is not None:
            self.engine.close()
        if self.multilingual is not None:
            await self.multilingual[1].close()
            self.multilingual[0].close()
