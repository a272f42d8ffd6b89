"""Smart Turn end-of-turn checks batched across calls (``POST /v1/turn``).

The same dynamic-batching rule as the transcription scheduler (:mod:`services.stt.scheduler`), in
its own small class because a turn check has no decoding options, no window count and its own
metrics: one worker task repeatedly

1. waits for the oldest check, then until ``max_batch`` checks are queued or ``wait_ms`` has passed
   since that oldest check arrived (checks that queued while the previous batch ran go at once);
2. takes up to ``max_batch`` checks, oldest first (FIFO: none starves);
3. runs ``run_batch`` (:meth:`shared.smart_turn.SmartTurn.probabilities`: features + one ONNX run
   over the stacked ``(B, 80, 800)`` input) on one dedicated thread and resolves every check's
   future. A batch that raises fails only its own checks; the worker goes on.

:class:`TurnService` is the runtime state the lifespan builds: the model (CUDA provider when
onnxruntime offers it, else CPU with ``STT_TURN_THREADS``) and the batcher, or the reason there is
none (disabled, model file missing), which the endpoint answers with 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from services.stt import metrics
from services.stt.config import STTSettings
from shared.errors import QueueFullError
from shared.smart_turn import SmartTurn, default_model_path

log = logging.getLogger(__name__)


class TurnBatcherClosedError(RuntimeError):
    """The batcher is stopped (service shutting down)."""


@dataclass(eq=False)
class _Check:
    pcm16: np.ndarray
    future: asyncio.Future[float]
    enqueued: float = field(default_factory=time.perf_counter)


class TurnBatcher:
    """Queue + worker that runs concurrent turn checks as one ``run_batch`` call.

    Args:
        run_batch: blocking ``Sequence[int16 (n,) 16 kHz] -> float32 (B,)`` probabilities, same
            order; called on one thread.
        max_batch: most checks per call (≥ 1).
        wait_ms: longest wait, from the oldest queued check's arrival, to fill a batch.
        max_queue: most checks waiting (not counting the batch in flight); more raise
            :class:`QueueFullError`.
    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[np.ndarray]], np.ndarray],
        *,
        max_batch: int = 16,
        wait_ms: float = 3.0,
        max_queue: int = 256,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be ≥ 1")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.wait_s = wait_ms / 1000.0
        self.max_queue = max_queue
        self._pending: deque[_Check] = deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stt-turn")
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.batch_sizes: list[int] = []
        """Checks per batch run so far, in order (tests and logs)."""

    def start(self) -> None:
        """Start the worker task on the running event loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._worker(), name="stt-turn-worker")

    async def close(self) -> None:
        """Stop the worker; queued checks fail with :class:`TurnBatcherClosedError`."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._pending:
            check = self._pending.popleft()
            if not check.future.done():
                check.future.set_exception(TurnBatcherClosedError("the STT service is shutting down"))
        metrics.TURN_QUEUE_DEPTH.set(0)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, pcm16: np.ndarray) -> float:
        """Queue one check (int16 (n,) 16 kHz, the utterance's last 8 s) and wait for P(turn complete).

        Raises:
            QueueFullError: ``max_queue`` checks are already waiting.
            TurnBatcherClosedError: the batcher is stopped.
            asyncio.CancelledError: the caller was cancelled; the check leaves the queue.
            Exception: whatever ``run_batch`` raised for this check's batch.
        """
        if self._closed:
            raise TurnBatcherClosedError("the STT service is shutting down")
        if len(self._pending) >= self.max_queue:
            raise QueueFullError(len(self._pending), 1, what="turn check")
        check = _Check(pcm16, asyncio.get_running_loop().create_future())
        self._pending.append(check)
        metrics.TURN_QUEUE_DEPTH.set(len(self._pending))
        self._wakeup.set()
        try:
            return await check.future
        except asyncio.CancelledError:
            if check in self._pending:
                self._pending.remove(check)
                metrics.TURN_QUEUE_DEPTH.set(len(self._pending))
            raise

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = self._pending[0].enqueued + self.wait_s
            while self._pending and len(self._pending) < self.max_batch:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._wakeup.wait()
            if not self._pending:  # everyone waiting was cancelled
                continue
            checks = [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]
            metrics.TURN_QUEUE_DEPTH.set(len(self._pending))
            started = time.perf_counter()
            try:
                probs = await loop.run_in_executor(self._executor, self.run_batch, [c.pcm16 for c in checks])
                if len(probs) != len(checks):
                    raise RuntimeError(f"run_batch returned {len(probs)} probabilities for {len(checks)} checks")
            except Exception as exc:  # fail this batch's checks only, keep serving
                log.exception("turn batch of %d checks failed", len(checks))
                for check in checks:
                    if not check.future.done():
                        check.future.set_exception(exc)
                continue
            done = time.perf_counter()
            self.batch_sizes.append(len(checks))
            metrics.TURN_BATCH_SIZE.observe(len(checks))
            metrics.TURN_BATCH_SECONDS.observe(done - started)
            for check, p in zip(checks, probs, strict=True):
                metrics.TURN_SECONDS.observe(done - check.enqueued)
                if not check.future.done():
                    check.future.set_result(float(p))


def turn_providers(device: str) -> list[str]:
    """onnxruntime providers for Smart Turn: CUDA first when ``device`` is not ``cpu`` and
    onnxruntime offers it (the ``onnxruntime-gpu`` build), else CPU only."""
    import onnxruntime as ort

    if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class TurnService:
    """Smart Turn behind ``POST /v1/turn`` (``app.state.turn``): the batcher, or why there is none.

    Build with :meth:`load` (never raises: a missing model leaves ``batcher`` ``None`` and
    ``error`` set, so the rest of the STT service starts).
    """

    def __init__(self, batcher: TurnBatcher | None, error: str | None = None, providers: Sequence[str] = ()) -> None:
        self.batcher = batcher
        self.error = error
        self.providers = list(providers)

    @classmethod
    async def load(cls, settings: STTSettings) -> TurnService:
        """Load the model (on a thread) and start the batcher on the running loop."""
        if not settings.smart_turn_enabled:
            return cls(None, "Smart Turn is disabled on this STT service (STT_SMART_TURN_ENABLED=false)")
        path = Path(settings.smart_turn_model_path or default_model_path())
        try:
            providers = turn_providers(settings.turn_device or settings.device)
            model = await asyncio.to_thread(SmartTurn, path, settings.turn_threads, providers)
        except FileNotFoundError:
            log.warning("Smart Turn model %s is missing: /v1/turn answers 503 (run `make models`)", path)
            return cls(None, f"the Smart Turn model {path} is missing on the STT service; run `make models`")
        except Exception as exc:
            log.exception("Smart Turn model load failed")
            return cls(None, f"the Smart Turn model failed to load: {exc}")
        batcher = TurnBatcher(
            model.probabilities,
            max_batch=settings.turn_max_batch,
            wait_ms=settings.turn_batch_wait_ms,
            max_queue=settings.turn_max_queue,
        )
        batcher.start()
        log.info(
            "Smart Turn ready on %s: max_batch=%d, wait=%.1fms",
            model.providers[0],
            settings.turn_max_batch,
            settings.turn_batch_wait_ms,
        )
        return cls(batcher, providers=model.providers)

    async def close(self) -> None:
        """Stop the batcher (queued checks fail)."""
        if self.batcher is not None:
            await self.batcher.close()
