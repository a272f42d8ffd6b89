"""The STT service's turn-check batcher on its own: batching, bounds, failures, order (no model;
the real Smart Turn behind ``POST /v1/turn`` is in tests/stt/test_stt_turn.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from services.stt.turn_batching import TurnBatcher, TurnBatcherClosedError
from shared.errors import QueueFullError


def _pcm(tag: int) -> np.ndarray:
    """A stand-in utterance whose first sample names it."""
    return np.array([tag, 0, 0], dtype=np.int16)


class Recorder:
    """A fake ``run_batch``: P = tag / 1000 per utterance; records each batch's tags; can be held on
    an event; raises for a batch holding the tag ``-1``."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        self.entered.set()
        self.gate.wait(10)
        tags = [int(p[0]) for p in batch]
        self.batches.append(tags)
        if -1 in tags:
            raise RuntimeError("boom")
        return np.array(tags, dtype=np.float32) / 1000.0


async def _hold(rec: Recorder, batcher: TurnBatcher, tag: int) -> asyncio.Future[float]:
    """Submit ``tag`` and return once its batch is running, held on the model (``rec.gate``)."""
    rec.gate.clear()
    rec.entered.clear()
    first = asyncio.ensure_future(batcher.submit(_pcm(tag)))
    await asyncio.to_thread(rec.entered.wait, 10)
    return first


async def _held_then_released(rec: Recorder, batcher: TurnBatcher, tags: list[int]) -> list[float]:
    """Submit ``tags[0]``, hold its batch on the model, queue the rest behind it, release."""
    first = await _hold(rec, batcher, tags[0])
    rest = [asyncio.ensure_future(batcher.submit(_pcm(t))) for t in tags[1:]]
    await asyncio.sleep(0.01)
    rec.gate.set()
    return list(await asyncio.gather(first, *rest))


async def test_concurrent_checks_share_one_run_and_each_gets_its_own_probability() -> None:
    rec = Recorder()
    batcher = TurnBatcher(rec, max_batch=16, wait_ms=200)
    batcher.start()
    probs = await asyncio.gather(*(batcher.submit(_pcm(t)) for t in (10, 20, 30, 40, 50)))
    await batcher.close()
    assert probs == pytest.approx([0.01, 0.02, 0.03, 0.04, 0.05])
    assert rec.batches == [[10, 20, 30, 40, 50]]
    assert batcher.batch_sizes == [5]


async def test_a_full_batch_runs_without_waiting_for_the_window() -> None:
    rec = Recorder()
    batcher = TurnBatcher(rec, max_batch=4, wait_ms=60_000)  # a minute's window: only "full" can start it
    batcher.start()
    probs = await asyncio.gather(*(batcher.submit(_pcm(t)) for t in (1, 2, 3, 4)))
    await batcher.close()
    assert probs == pytest.approx([0.001, 0.002, 0.003, 0.004])
    assert rec.batches == [[1, 2, 3, 4]]


async def test_batches_respect_max_batch_in_arrival_order() -> None:
    rec = Recorder()
    batcher = TurnBatcher(rec, max_batch=4, wait_ms=0)
    batcher.start()
    tags = list(range(1, 12))
    probs = await _held_then_released(rec, batcher, tags)
    await batcher.close()
    assert probs == pytest.approx([t / 1000 for t in tags])
    assert rec.batches == [[1], [2, 3, 4, 5], [6, 7, 8, 9], [10, 11]]
    assert all(len(b) <= 4 for b in rec.batches)


async def test_a_lone_check_is_answered_after_the_wait_alone() -> None:
    rec = Recorder()
    batcher = TurnBatcher(rec, max_batch=16, wait_ms=5)
    batcher.start()
    first = await batcher.submit(_pcm(7))  # nobody else comes: it runs once the wait is over
    second = await batcher.submit(_pcm(8))
    await batcher.close()
    assert (first, second) == pytest.approx((0.007, 0.008))
    assert rec.batches == [[7], [8]]


async def test_a_failing_batch_fails_only_its_own_checks() -> None:
    rec = Recorder()
    batcher = TurnBatcher(rec, max_batch=2, wait_ms=0)
    batcher.start()
    held = await _hold(rec, batcher, 5)
    bad = [asyncio.ensure_future(batcher.submit(_pcm(t))) for t in (-1, 6)]  # one batch, poisoned
    good = [asyncio.ensure_future(batcher.submit(_pcm(t))) for t in (7, 8)]  # the next batch
    await asyncio.sleep(0.01)
    rec.gate.set()
    results = await asyncio.gather(held, *bad, *good, return_exceptions=True)
    after = await batcher.submit(_pcm(9))  # still serving
    await batcher.close()
    assert rec.batches == [[5], [-1, 6], [7, 8], [9]]
    assert results[0] == pytest.approx(0.005)
    assert all(isinstance(r, RuntimeError) for r in results[1:3])
    assert results[3:] == pytest.approx([0.007, 0.008])
    assert after == pytest.approx(0.009)


async def test_no_check_starves_under_a_steady_stream() -> None:
    """Checks keep arriving while batches run: every check is answered, batches go oldest first."""
    rec = Recorder()
    batcher = TurnBatcher(rec, max_batch=3, wait_ms=1)
    batcher.start()

    async def caller(base: int) -> list[float]:
        out = []
        for i in range(5):
            out.append(await batcher.submit(_pcm(base + i)))
            await asyncio.sleep(0)
        return out

    answers = await asyncio.gather(*(caller(100 * c) for c in range(1, 7)))
    await batcher.close()
    assert answers == [pytest.approx([(100 * c + i) / 1000 for i in range(5)]) for c in range(1, 7)]
    seen = [t for b in rec.batches for t in b]
    assert sorted(seen) == sorted(100 * c + i for c in range(1, 7) for i in range(5))
    assert all(len(b) <= 3 for b in rec.batches)
    for c in range(1, 7):  # each caller's checks are served in the order it sent them
        mine = [t for t in seen if t // 100 == c]
        assert mine == sorted(mine)


async def test_a_cancelled_check_leaves_the_queue_before_the_model() -> None:
    rec = Recorder()
    batcher = TurnBatcher(rec, max_batch=4, wait_ms=0)
    batcher.start()
    held = await _hold(rec, batcher, 1)
    gone = asyncio.ensure_future(batcher.submit(_pcm(2)))
    kept = asyncio.ensure_future(batcher.submit(_pcm(3)))
    await asyncio.sleep(0.01)
    gone.cancel()
    await asyncio.sleep(0.01)
    rec.gate.set()
    assert await held == pytest.approx(0.001) and await kept == pytest.approx(0.003)
    await batcher.close()
    assert rec.batches == [[1], [3]]


async def test_a_full_queue_refuses_and_a_closed_batcher_fails_the_waiting() -> None:
    rec = Recorder()
    batcher = TurnBatcher(rec, max_batch=1, wait_ms=0, max_queue=2)
    batcher.start()
    held = await _hold(rec, batcher, 1)
    waiting = [asyncio.ensure_future(batcher.submit(_pcm(t))) for t in (2, 3)]
    await asyncio.sleep(0.01)
    with pytest.raises(QueueFullError):
        await batcher.submit(_pcm(4))
    await batcher.close()
    rec.gate.set()
    for w in waiting:
        with pytest.raises(TurnBatcherClosedError):
            await w
    held.cancel()
    with pytest.raises(TurnBatcherClosedError):
        await batcher.submit(_pcm(5))
