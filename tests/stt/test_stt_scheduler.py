"""The batching scheduler on its own: grouping, bounds, cancellation, failures (no model needed)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from services.stt.engine import DecodeOptions, Prepared, Result
from services.stt.scheduler import BatchScheduler, SchedulerClosedError
from shared.errors import QueueFullError


def _item(options: DecodeOptions | None = None, windows: int = 1) -> Prepared:
    """A stand-in request of ``windows`` 30 s windows (features are never looked at here)."""
    feats = np.zeros((windows, 1, 1), dtype=np.float32)
    return Prepared(feats, [(float(i), 1.0) for i in range(windows)], float(windows), options or DecodeOptions())


class Recorder:
    """A fake ``run_batch`` that records each batch and can be held on an event."""

    def __init__(self) -> None:
        self.batches: list[list[Prepared]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False

    def __call__(self, items: list[Prepared]) -> list[Result]:
        self.gate.wait(10)
        self.batches.append(items)
        if self.fail:
            raise RuntimeError("boom")
        return [Result(f"text-{id(it)}", "en", it.audio_seconds, [], batch_size=len(items)) for it in items]


async def test_concurrent_requests_share_a_batch_and_get_their_own_result() -> None:
    rec = Recorder()
    sched = BatchScheduler(rec, max_batch=8, batch_window_ms=200, max_queue=16)
    sched.start()
    items = [_item() for _ in range(5)]
    results = await asyncio.gather(*(sched.submit(it) for it in items))
    await sched.close()
    assert [r.text for r in results] == [f"text-{id(it)}" for it in items]
    assert [len(b) for b in rec.batches] == [5]


async def test_batches_respect_max_batch_and_group_by_options() -> None:
    rec = Recorder()
    rec.gate.clear()  # hold the first batch so the rest queue up behind it
    sched = BatchScheduler(rec, max_batch=3, batch_window_ms=0, max_queue=32)
    sched.start()
    a, b = DecodeOptions(language="en"), DecodeOptions(language="en", prompt="Gregson")
    first = asyncio.ensure_future(sched.submit(_item(a)))
    await asyncio.sleep(0.05)
    rest = [asyncio.ensure_future(sched.submit(_item(a if i % 2 else b))) for i in range(7)]
    await asyncio.sleep(0.05)
    rec.gate.set()
    await asyncio.gather(first, *rest)
    await sched.close()
    sizes = [len(batch) for batch in rec.batches]
    assert sizes[0] == 1 and max(sizes) <= 3 and sum(sizes) == 8
    for batch in rec.batches:
        assert len({it.options for it in batch}) == 1
    # FIFO: the group of the oldest waiting request (options b, submitted first) goes next.
    assert rec.batches[1][0].options == b


async def test_long_request_counts_its_windows() -> None:
    rec = Recorder()
    rec.gate.clear()
    sched = BatchScheduler(rec, max_batch=4, batch_window_ms=0, max_queue=8)
    sched.start()
    hold = asyncio.ensure_future(sched.submit(_item()))
    await asyncio.sleep(0.05)
    jobs = [asyncio.ensure_future(sched.submit(_item(windows=3))) for _ in range(2)]
    jobs.append(asyncio.ensure_future(sched.submit(_item())))
    await asyncio.sleep(0.05)
    rec.gate.set()
    await asyncio.gather(hold, *jobs)
    await sched.close()
    assert [sum(it.size for it in b) for b in rec.batches] == [
        1,
        3,
        4,
    ]  # FIFO: the second long one does not fit beside the first


async def test_full_queue_refuses_with_retry_after() -> None:
    rec = Recorder()
    rec.gate.clear()
    sched = BatchScheduler(rec, max_batch=1, batch_window_ms=0, max_queue=2)
    sched.start()
    running = asyncio.ensure_future(sched.submit(_item()))
    await asyncio.sleep(0.05)  # in flight: no longer counts against the queue
    queued = [asyncio.ensure_future(sched.submit(_item())) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(QueueFullError) as info:
        await sched.submit(_item())
    assert info.value.retry_after_s >= 1 and sched.depth == 2
    rec.gate.set()
    await asyncio.gather(running, *queued)
    await sched.close()


async def test_cancelled_request_leaves_the_queue_and_never_runs() -> None:
    rec = Recorder()
    rec.gate.clear()
    sched = BatchScheduler(rec, max_batch=1, batch_window_ms=0, max_queue=8)
    sched.start()
    running = asyncio.ensure_future(sched.submit(_item()))
    await asyncio.sleep(0.05)
    gone_item = _item()
    gone = asyncio.ensure_future(sched.submit(gone_item))
    kept = asyncio.ensure_future(sched.submit(_item()))
    await asyncio.sleep(0)
    assert sched.depth == 2
    gone.cancel()
    await asyncio.sleep(0)
    assert sched.depth == 1
    rec.gate.set()
    await asyncio.gather(running, kept)
    await sched.close()
    assert all(gone_item not in batch for batch in rec.batches)
    assert len(rec.batches) == 2


async def test_failing_batch_fails_its_callers_and_the_worker_goes_on() -> None:
    rec = Recorder()
    rec.fail = True
    sched = BatchScheduler(rec, max_batch=4, batch_window_ms=50, max_queue=8)
    sched.start()
    outcomes = await asyncio.gather(*(sched.submit(_item()) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    rec.fail = False
    assert (await sched.submit(_item())).text.startswith("text-")
    await sched.close()
    with pytest.raises(SchedulerClosedError):
        await sched.submit(_item())
