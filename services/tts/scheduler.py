"""Bounded, fair, batching queue in front of the synthesis backend.

* At most ``max_inflight`` batches run at once (each in a worker thread); at most ``max_queue``
  jobs wait. :meth:`Scheduler.submit` raises :class:`QueueFullError` beyond that (the routes answer
  503 with ``Retry-After``): under overload new callers are refused quickly instead of every caller
  getting slow.
* Fairness: a job's priority is ``(rank, arrival)`` where ``rank`` is how many unfinished jobs its
  stream already had when it was submitted. Every stream's next sentence therefore goes before any
  stream's second-next one — a long paragraph cannot starve another caller's first sentence
  (round-robin across streams, FIFO within one).
* Batching: a worker that takes a job also takes, without waiting longer than ``batch_wait_s``,
  up to ``max_batch - 1`` more, and hands them to the backend together (one forward pass where the
  backend supports it; see :class:`services.tts.engine.Backend`).
* Cancellation: a job whose future was cancelled (barge-in, client gone) is dropped when dequeued;
  a batch already on the accelerator finishes and its result is discarded.
* Repeats: with a :class:`services.tts.phrase_cache.PhraseCache`, a job whose result is cached is
  answered at once (a done future; it takes no queue slot and waits behind no batch), and each
  result computed is offered to the cache.
* The bound counts segments of every caller, so a long input is not submitted all at once:
  :class:`services.tts.feed.SegmentFeed` keeps a few of its segments queued and waits
  (:meth:`Scheduler.wait_for_room`) to submit the rest.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from services.tts.phrase_cache import PhraseCache
from shared.errors import QueueFullError

log = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")

__all__ = ["Scheduler", "StreamTicket"]


class StreamTicket:
    """Identifies one stream (request or WebSocket turn) for fair ordering; counts its unfinished jobs."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = 0


@dataclass(order=True)
class _Job(Generic[P]):
    rank: int
    seq: int
    payload: P = field(compare=False)
    future: asyncio.Future[Any] = field(compare=False)
    ticket: StreamTicket = field(compare=False)


class Scheduler(Generic[P, R]):
    """Runs ``run_batch(payloads) -> results`` (blocking, in a thread) over queued jobs.

    Args:
        run_batch: maps a list of payloads to a list of results of the same length, in order.
            An exception fails every job of the batch.
        max_inflight: batches running at once (worker tasks).
        max_batch: jobs per batch (1 disables batching).
        batch_wait_s: how long a worker waits for more jobs to fill a batch, seconds.
        max_queue: jobs allowed to wait.
        on_batch: optional callback ``(batch_size) -> None`` for metrics.
        cache: optional cache of results by payload (repeated phrases), checked before queueing.
    """

    def __init__(
        self,
        run_batch: Callable[[list[P]], list[R]],
        max_inflight: int = 1,
        max_batch: int = 1,
        batch_wait_s: float = 0.0,
        max_queue: int = 64,
        on_batch: Callable[[int], None] | None = None,
        cache: PhraseCache[P] | None = None,
    ) -> None:
        self._run_batch = run_batch
        self.cache = cache
        self.max_inflight = max(1, max_inflight)
        self.max_batch = max(1, max_batch)
        self.batch_wait_s = batch_wait_s
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._queue: asyncio.PriorityQueue[_Job[P]] = asyncio.PriorityQueue()
        self._seq = itertools.count()
        self._workers: list[asyncio.Task[None]] = []
        self._room = asyncio.Event()
        """Set whenever a job leaves the queue (wakes :meth:`wait_for_room`)."""
        self.inflight = 0

    @property
    def depth(self) -> int:
        """Jobs waiting (cancelled ones included until a worker drops them)."""
        return self._queue.qsize()

    @property
    def has_room(self) -> bool:
        """Whether :meth:`submit` would accept one more job now."""
        return self._queue.qsize() < self.max_queue

    async def wait_for_room(self) -> None:
        """Return once the queue has room for one more job (at once if it has now).

        Several waiters may be woken by the same free slot: :meth:`submit` can still raise
        :class:`QueueFullError` afterwards, so callers loop.
        """
        while not self.has_room:
            self._room.clear()
            await self._room.wait()

    def start(self) -> None:
        """Start the worker tasks on the running loop."""
        if not self._workers:
            self._workers = [asyncio.create_task(self._worker(i)) for i in range(self.max_inflight)]

    async def stop(self) -> None:
        """Stop the workers; waiting jobs are cancelled."""
        for w in self._workers:
            w.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        while not self._queue.empty():
            self._queue.get_nowait().future.cancel()
        self._room.set()

    def submit(self, payload: P, ticket: StreamTicket | None = None) -> asyncio.Future[R]:
        """Queue one job; return a future of its result (cancel it to drop the job).

        Raises:
            QueueFullError: ``max_queue`` jobs are already waiting.
        """
        loop = asyncio.get_running_loop()
        cached = self.cache.get(payload) if self.cache is not None else None
        if cached is not None:
            done: asyncio.Future[Any] = loop.create_future()
            done.set_result(cached)
            return done
        if not self.has_room:
            raise QueueFullError(self._queue.qsize(), what="synthesis")
        ticket = ticket or StreamTicket()
        future: asyncio.Future[R] = loop.create_future()
        job = _Job(ticket.pending, next(self._seq), payload, future, ticket)
        ticket.pending += 1
        future.add_done_callback(lambda _f: self._done(ticket))
        self._queue.put_nowait(job)
        return future

    async def run(self, payload: P, ticket: StreamTicket | None = None) -> R:
        """Submit and await one job; cancelling the caller drops the job."""
        future = self.submit(payload, ticket)
        try:
            return await future
        finally:
            future.cancel()

    @staticmethod
    def _done(ticket: StreamTicket) -> None:
        ticket.pending -= 1

    async def _take_batch(self) -> list[_Job[P]]:
        batch: list[_Job[P]] = []
        while not batch:
            job = await self._queue.get()
            self._room.set()
            if not job.future.done():
                batch.append(job)
        if self.max_batch > 1:
            deadline = asyncio.get_running_loop().time() + self.batch_wait_s
            while len(batch) < self.max_batch:
                if self._queue.empty():
                    remaining = deadline - asyncio.get_running_loop().time()
                    if remaining <= 0:
                        break
                    await asyncio.sleep(min(remaining, 0.002))
                    continue
                job = self._queue.get_nowait()
                self._room.set()
                if not job.future.done():
                    batch.append(job)
        return batch

    async def _worker(self, index: int) -> None:
        while True:
            batch = await self._take_batch()
            self.inflight += 1
            try:
                if self._on_batch is not None:
                    self._on_batch(len(batch))
                results = await asyncio.to_thread(self._run_batch, [j.payload for j in batch])
            except asyncio.CancelledError:
                for job in batch:
                    job.future.cancel()
                raise
            except Exception as exc:
                log.exception("synthesis batch of %d failed", len(batch))
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
            else:
                for job, result in zip(batch, results, strict=True):
                    if self.cache is not None and isinstance(result, np.ndarray):
                        self.cache.put(job.payload, result)
                    if not job.future.done():
                        job.future.set_result(result)
            finally:
                self.inflight -= 1
