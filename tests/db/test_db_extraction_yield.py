"""A post-call extraction yields the LLM to a call that starts while it runs (single-slot llama.cpp):
it is cancelled, redone once the line is free, and runs to its end once ``defer_s`` is spent."""

from __future__ import annotations

import asyncio

from gateway.after_call.extraction import CallDetails, ExtractionResult
from gateway.after_call.runtime import DatabaseHooks
from gateway.after_call.worker import PostCallWorker
from gateway.db.engine import Database
from gateway.db.repos import CallRepo
from tests.db.test_db_lifecycle import add_acme, settings, summary


class SlowExtractor:
    """Takes ``seconds`` per extraction (cancellable, as a streamed LLM request is)."""

    model = "slow"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = 0
        self.cancelled = 0
        self.running = asyncio.Event()

    async def extract(self, turns, caller_id=""):
        self.started += 1
        self.running.set()
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running.clear()
        return ExtractionResult(CallDetails(caller_name="Bob", summary="Leak."), "{}", 1, None, "slow", 5.0)


async def ended_call(db: Database, tmp_path, sid: str) -> DatabaseHooks:
    await add_acme(db)
    hooks = DatabaseHooks(settings(tmp_path), db)
    profile = await hooks.profile_for(sid, "+15550100001", "+15550100002")
    await hooks.call_ended(summary(profile, sid))
    return hooks


async def test_a_call_that_starts_cancels_the_extraction_which_is_redone_after_it(db: Database, tmp_path) -> None:
    await ended_call(db, tmp_path, "CAy1")
    live = {"calls": 0}
    extractor = SlowExtractor(1.0)
    worker = PostCallWorker(db, extractor, busy=lambda: live["calls"] > 0, defer_s=30.0)  # type: ignore[arg-type]
    job = asyncio.create_task(worker.process_pending())
    await asyncio.wait_for(extractor.running.wait(), 5)
    live["calls"] = 1  # a caller rings while the extraction runs
    await asyncio.sleep(0.6)
    assert extractor.cancelled == 1 and not extractor.running.is_set()
    live["calls"] = 0  # the call ends
    assert await asyncio.wait_for(job, 10) == 1
    assert extractor.started == 2 and extractor.cancelled == 1
    async with db.sessions() as s:
        call = await CallRepo(s).get("CAy1", details=True)
    assert call is not None and call.extraction_status == "done"


async def test_once_defer_s_is_spent_the_extraction_runs_to_its_end(db: Database, tmp_path) -> None:
    await ended_call(db, tmp_path, "CAy2")
    live = {"calls": 1}  # calls all along: the worker waits defer_s, then extracts anyway
    extractor = SlowExtractor(0.6)
    worker = PostCallWorker(db, extractor, busy=lambda: live["calls"] > 0, defer_s=0.5)  # type: ignore[arg-type]
    assert await asyncio.wait_for(worker.process_pending(), 10) == 1
    assert extractor.started == 1 and extractor.cancelled == 0
