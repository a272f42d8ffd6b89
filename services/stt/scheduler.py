"""Dynamic batching across calls: many requests, one model, one batched ``generate`` at a time.

Requests (:class:`~services.stt.engine.Prepared`: features already computed on the request's own
thread) wait in a bounded FIFO queue. One worker task repeatedly

1. waits for the oldest request, then until ``max_batch`` windows with the same decoding options
   are queued or ``batch_window_ms`` has passed since that oldest request arrived (requests that
   queued while the previous batch ran go at once: the classic max-queue-delay rule of dynamic
   batchers such as Triton's);
2. takes the oldest request's options group (FIFO inside it, up to ``max_batch`` windows); other
   groups stay queued and lead the next round, so no group starves;
3. runs ``run_batch`` on one dedicated thread (CTranslate2 releases the GIL; the event loop keeps
   accepting requests meanwhile) and resolves every request's future.

A request whose awaiting task is cancelled (client went away) is removed from the queue before it
reaches the model. Batch size, requests per batch, queue wait and batch time are Prometheus
histograms (``services.stt.metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from services.stt import metrics
from services.stt.engine import Prepared, Result
from shared.errors import QueueFullError

log = logging.getLogger(__name__)


class SchedulerClosedError(RuntimeError):
    """The scheduler is stopped (service shutting down)."""


@dataclass(eq=False)
class _Job:
    item: Prepared
    future: asyncio.Future[Result]
    enqueued: float = field(default_factory=time.perf_counter)


class BatchScheduler:
    """Queue + worker that batches :class:`Prepared` requests into ``run_batch`` calls.

    Args:
        run_batch: blocking function ``list[Prepared] -> list[Result]`` (e.g.
            ``WhisperEngine.run_batch``); called with items of equal options, on one thread.
        max_batch: most 30 s windows per call (≥ 1; 1 reproduces one-request-at-a-time).
        batch_window_ms: longest wait, from the oldest queued request's arrival, to fill a batch.
        max_queue: most requests waiting (not counting the batch in flight); more raise
            :class:`QueueFullError`.
    """

    def __init__(
        self,
        run_batch: Callable[[list[Prepared]], list[Result]],
        *,
        max_batch: int = 32,
        batch_window_ms: float = 10.0,
        max_queue: int = 256,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be ≥ 1")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.window_s = batch_window_ms / 1000.0
        self.max_queue = max_queue
        self._pending: deque[_Job] = deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stt-batch")
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._last_batch_s = 0.5
        self.batches = 0
        """Batched calls made so far."""

    @property
    def depth(self) -> int:
        """Requests waiting (not yet in a batch)."""
        return len(self._pending)

    def start(self) -> None:
        """Start the worker task on the running event loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._worker(), name="stt-batch-worker")

    async def close(self) -> None:
        """Stop the worker; queued requests fail with :class:`SchedulerClosedError`."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                job.future.set_exception(SchedulerClosedError("the STT service is shutting down"))
        metrics.QUEUE_DEPTH.set(0)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def retry_after_s(self) -> int:
        """Seconds a refused client should wait: the queue's batches at the last batch's pace."""
        batches_ahead = max(1, len(self._pending) // self.max_batch)
        return max(1, round(batches_ahead * self._last_batch_s))

    async def submit(self, item: Prepared) -> Result:
        """Queue ``item`` and wait for its result.

        Raises:
            QueueFullError: ``max_queue`` requests are already waiting.
            SchedulerClosedError: the scheduler is stopped.
            asyncio.CancelledError: the caller was cancelled; the request leaves the queue.
            Exception: whatever ``run_batch`` raised for its batch.
        """
        if self._closed:
            raise SchedulerClosedError("the STT service is shutting down")
        if len(self._pending) >= self.max_queue:
            metrics.REJECTED.inc()
            raise QueueFullError(len(self._pending), self.retry_after_s(), what="transcription")
        job = _Job(item, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        metrics.QUEUE_DEPTH.set(len(self._pending))
        self._wakeup.set()
        try:
            return await job.future
        except asyncio.CancelledError:
            if job in self._pending:
                self._pending.remove(job)
                metrics.QUEUE_DEPTH.set(len(self._pending))
                metrics.CANCELLED.inc()
            raise

    # ------------------------------------------------------------------------------ worker
    def _group_size(self, key: object) -> int:
        return sum(j.item.size for j in self._pending if j.item.options == key)

    def _take_batch(self) -> list[_Job]:
        """Pop the oldest job's options group, FIFO, up to ``max_batch`` windows (≥ 1 job)."""
        key = self._pending[0].item.options
        batch: list[_Job] = []
        windows = 0
        for job in list(self._pending):
            if job.item.options != key:
                continue
            if batch and windows + job.item.size > self.max_batch:
                break
            batch.append(job)
            windows += job.item.size
        for job in batch:
            self._pending.remove(job)
        metrics.QUEUE_DEPTH.set(len(self._pending))
        return batch

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = self._pending[0].enqueued + self.window_s
            while self._pending:
                key = self._pending[0].item.options
                remaining = deadline - time.perf_counter()
                if self._group_size(key) >= self.max_batch or remaining <= 0:
                    break
                self._wakeup.clear()
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._wakeup.wait()
            if not self._pending:  # everyone waiting was cancelled
                continue
            jobs = self._take_batch()
            started = time.perf_counter()
            for job in jobs:
                metrics.QUEUE_WAIT.observe(started - job.enqueued)
            items = [job.item for job in jobs]
            try:
                results = await loop.run_in_executor(self._executor, self.run_batch, items)
            except Exception as exc:  # resolve every waiter, keep serving
                log.exception("batch of %d requests failed", len(jobs))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            self._last_batch_s = time.perf_counter() - started
            self.batches += 1
            metrics.BATCH_SECONDS.observe(self._last_batch_s)
            metrics.BATCH_SIZE.observe(sum(it.size for it in items))
            metrics.BATCH_REQUESTS.observe(len(items))
            for job, result in zip(jobs, results, strict=True):
                if not job.future.done():
                    job.future.set_result(result)
