"""DatabaseHooks: the number's agent answers, calls and turns are kept, events go to the outbox."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import soundfile as sf
from sqlalchemy import select

from gateway.after_call.extraction import CallDetails, ExtractionResult
from gateway.after_call.runtime import DatabaseHooks
from gateway.after_call.worker import PostCallWorker
from gateway.agents.profile import AgentProfile, CallSummary
from gateway.agents.resolver import render_prompt
from gateway.config import GatewaySettings
from gateway.db.engine import Database
from gateway.db.models import OutboxEvent
from gateway.db.repos import AgentRepo, CallRepo, NumberRepo

ACME = {
    "name": "Acme Plumbing",
    "greeting": "Acme Plumbing, how can I help?",
    "system_prompt": "You are the receptionist.\n{facts}\nBe brief.",
    "voice": "am_michael",
    "facts": {"hours": "Mon-Fri 8-6", "service_area": "Springfield"},
    "transfer_number": "+15550100099",
    "webhook_url": "http://127.0.0.1:9/hook",
    "webhook_secret": "acme-secret-123",
}
TURNS = [
    {"role": "assistant", "text": "Acme Plumbing, how can I help?", "started_at": 1.0, "ended_at": 2.0},
    {"role": "user", "text": "My sink leaks.", "raw_text": "my sink leaks", "started_at": 3.0, "ended_at": 4.0},
    {"role": "assistant", "text": "What is your address?", "started_at": 5.0, "ended_at": 6.0, "interrupted": False},
]


def settings(tmp_path, **kw) -> GatewaySettings:
    return GatewaySettings(data_dir=str(tmp_path), webhook_url="http://127.0.0.1:9/default", **kw)


async def add_acme(db: Database, number: str = "+15550100002", **extra) -> int:
    async with db.sessions() as s, s.begin():
        agent = await AgentRepo(s).create(**{**ACME, **extra})
        await NumberRepo(s).create(number, agent.id)
        return agent.id


async def events(db: Database, call_sid: str) -> list[OutboxEvent]:
    async with db.sessions() as s:
        return list((await s.scalars(select(OutboxEvent).where(OutboxEvent.call_sid == call_sid))).all())


def summary(profile: AgentProfile, sid: str = "CA100", recording: np.ndarray | None = None) -> CallSummary:
    now = time.time()
    return CallSummary(sid, "MZ100", "+15550100001", "+15550100002", now - 30, now, TURNS, profile,
                       recording_pcm16=recording)  # fmt: skip


def test_render_prompt_puts_facts_in_place_or_appends_them() -> None:
    assert render_prompt("A\n{facts}\nB", {"hours": "9-5"}) == "A\nHours: 9-5\nB"
    assert render_prompt("A", {"service_area": "X"}) == "A\n\nBusiness facts:\nService area: X"
    assert render_prompt("A", {}) == "A"


async def test_known_number_gets_its_agent_and_the_call_is_recorded(db: Database, tmp_path) -> None:
    agent_id = await add_acme(db)
    hooks = DatabaseHooks(settings(tmp_path), db)
    profile = await hooks.profile_for("CA100", "+15550100001", "+15550100002")
    assert (profile.agent_id, profile.name, profile.voice) == (agent_id, "Acme Plumbing", "am_michael")
    assert profile.greeting == ACME["greeting"] and profile.transfer_number == "+15550100099"
    assert (
        profile.system_prompt == "You are the receptionist.\nHours: Mon-Fri 8-6\nService area: Springfield\nBe brief."
    )
    assert profile.webhook_url == ACME["webhook_url"] and profile.reject_message is None
    await hooks.drain()
    async with db.sessions() as s:
        call = await CallRepo(s).get("CA100")
    assert call is not None and call.status == "in-progress" and call.agent_id == agent_id
    [started] = await events(db, "CA100")
    body = json.loads(started.body)
    assert (started.event_type, started.status, started.secret) == ("call.started", "pending", "acme-secret-123")
    assert body["event"] == "call.started" and body["event_id"] == started.event_id
    assert (body["from"], body["to"], body["agent_id"]) == ("+15550100001", "+15550100002", agent_id)


async def test_unknown_number_default_policy(db: Database, tmp_path) -> None:
    hooks = DatabaseHooks(settings(tmp_path), db)
    profile = await hooks.profile_for("CA1", "+15550100001", "+15559990000")
    assert profile.agent_id is None and profile.greeting == GatewaySettings().agent.greeting
    assert profile.webhook_url == "http://127.0.0.1:9/default" and profile.reject_message is None
    await hooks.drain()
    assert await events(db, "CA1") == []  # the settings agent sends only call.completed by default
    default_id = await add_acme(db, "+15550100005", name="Default Co", is_default=True)
    hooks.invalidate()  # as the admin API does after a change (the number → agent map is cached)
    profile = await hooks.profile_for("CA2", "+15550100001", "+15559990000")
    assert profile.agent_id == default_id and profile.name == "Default Co"
    await hooks.drain()


async def test_unknown_number_reject_policy(db: Database, tmp_path) -> None:
    await add_acme(db, is_default=True)  # even a default agent does not answer under "reject"
    hooks = DatabaseHooks(settings(tmp_path, unknown_number_policy="reject", reject_message="Not in service."), db)
    profile = await hooks.profile_for("CA9", "+15550100001", "+15559990000")
    assert profile.reject_message == "Not in service." and profile.agent_id is None
    await hooks.call_ended(summary(profile, "CA9"))
    async with db.sessions() as s:
        call = await CallRepo(s).get("CA9")
    assert call is not None and call.status == "rejected" and call.extraction_status == "skipped"
    assert await events(db, "CA9") == []


async def test_database_down_asks_the_caller_to_call_back(tmp_path) -> None:
    dead = Database("postgresql+asyncpg://postgres@127.0.0.1:9/none")  # nothing listens on port 9
    hooks = DatabaseHooks(settings(tmp_path), dead, lookup_timeout_s=2.0)
    t0 = time.monotonic()
    profile = await hooks.profile_for("CA1", "+15550100001", "+15550100002")
    # not the settings agent: the number may be another business's (tests/db/test_db_agent_lookup.py)
    assert profile.agent_id is None and profile.greeting != GatewaySettings().agent.greeting
    assert profile.reject_message == profile.greeting and "call back" in profile.greeting
    assert time.monotonic() - t0 < 5
    await hooks.call_ended(summary(profile, "CA1"))  # logged, not raised
    await dead.dispose()


async def test_call_ended_keeps_call_turns_recording_and_holds_call_completed(db: Database, tmp_path) -> None:
    agent_id = await add_acme(db)
    hooks = DatabaseHooks(settings(tmp_path), db)
    profile = await hooks.profile_for("CA100", "+15550100001", "+15550100002")
    mix = (8000 * np.sin(np.arange(16000) / 8000 * 2 * np.pi * 440)).astype(np.int16)
    await hooks.call_ended(summary(profile, recording=mix))
    async with db.sessions() as s:
        call = await CallRepo(s).get("CA100", details=True)
        assert call is not None
        assert (call.status, call.agent_id, call.extraction_status) == ("completed", agent_id, "pending")
        assert 29 < (call.duration_s or 0) < 31
        assert [(t.seq, t.role, t.text) for t in call.turns] == [(i, t["role"], t["text"]) for i, t in enumerate(TURNS)]
        assert call.turns[1].raw_text == "my sink leaks" and call.turns[2].data["interrupted"] is False
        assert call.recording_path == "recordings/CA100.wav"
    data, rate = sf.read(io.BytesIO((tmp_path / "recordings" / "CA100.wav").read_bytes()), dtype="int16")
    assert rate == 8000 and np.array_equal(data, mix)
    by_type = {e.event_type: e for e in await events(db, "CA100")}
    assert by_type["call.started"].status == "pending"
    done = by_type["call.completed"]
    assert done.status == "held"  # until the extraction is stored
    body = json.loads(done.body)
    assert [t["text"] for t in body["turns"]] == [t["text"] for t in TURNS]
    assert body["recording_url"] == "/api/calls/CA100/recording" and body["extraction_status"] == "pending"


class FixedExtractor:
    """Stands in for the LLM to test the worker's bookkeeping (the real LLM: test_db_extraction)."""

    model = "fixed"

    def __init__(self, ok: bool) -> None:
        self.ok = ok
        self.seen: list[list[dict]] = []

    async def extract(self, turns, caller_id=""):
        self.seen.append(list(turns))
        details = CallDetails(caller_name="Bob", urgency="emergency", summary="Leak.") if self.ok else None
        return ExtractionResult(details, "{}", 1 if self.ok else 2, None if self.ok else "invalid", "fixed", 5.0)


async def test_worker_stores_extraction_and_releases_the_event(db: Database, tmp_path) -> None:
    await add_acme(db)
    hooks = DatabaseHooks(settings(tmp_path), db)
    for sid, ok in (("CA1", True), ("CA2", False)):
        profile = await hooks.profile_for(sid, "+15550100001", "+15550100002")
        await hooks.call_ended(summary(profile, sid))
        extractor = FixedExtractor(ok)
        worker = PostCallWorker(db, extractor)  # type: ignore[arg-type]
        assert await worker.process_pending() == 1
        assert await worker.process_pending() == 0
        assert [t["text"] for t in extractor.seen[0]] == [t["text"] for t in TURNS]
        async with db.sessions() as s:
            call = await CallRepo(s).get(sid, details=True)
        assert call is not None and call.extraction is not None
        assert call.extraction_status == ("done" if ok else "failed")
        [done] = [e for e in await events(db, sid) if e.event_type == "call.completed"]
        body = json.loads(done.body)
        assert done.status == "pending"
        assert body["extraction_status"] == call.extraction_status
        assert body["extraction"] == (call.extraction.data if ok else None)
        if ok:
            assert body["extraction"]["caller_name"] == "Bob" and body["extraction"]["urgency"] == "emergency"


async def test_extraction_disabled_sends_call_completed_at_once(db: Database, tmp_path) -> None:
    await add_acme(db)
    hooks = DatabaseHooks(settings(tmp_path, extraction_enabled=False, recording_enabled=False), db)
    profile = await hooks.profile_for("CA7", "+15550100001", "+15550100002")
    await hooks.call_ended(summary(profile, "CA7", recording=np.zeros(8000, dtype=np.int16)))
    async with db.sessions() as s:
        call = await CallRepo(s).get("CA7")
    assert call is not None and call.extraction_status == "disabled" and call.recording_path is None
    assert not (tmp_path / "recordings").exists()
    assert {e.status for e in await events(db, "CA7")} == {"pending"}


async def test_many_calls_ending_at_once_are_all_kept(db: Database, tmp_path) -> None:
    """Concurrent call starts/ends and a running dispatcher: no write is lost to a busy database."""
    import asyncio

    import httpx

    from gateway.after_call.outbox import OutboxDispatcher, OutboxPolicy

    await add_acme(db)
    async with httpx.AsyncClient() as client:
        dispatcher = OutboxDispatcher(
            db, client, OutboxPolicy(timeout_s=0.5, poll_interval_s=0.05, backoff_base_s=0.05)
        )
        dispatcher.start()
        hooks = DatabaseHooks(settings(tmp_path, extraction_enabled=False), db, dispatcher)

        async def one_call(i: int) -> None:
            profile = await hooks.profile_for(f"CAc{i}", "+15550100001", "+15550100002")
            await asyncio.sleep(0.01 * (i % 5))
            await hooks.call_ended(summary(profile, f"CAc{i}"))

        try:
            await asyncio.gather(*(one_call(i) for i in range(25)))
        finally:
            await dispatcher.stop()
    async with db.sessions() as s:
        calls, total = await CallRepo(s).page(limit=100)
    assert total == 25 and all(c.status == "completed" and c.ended_at is not None for c in calls)
    for i in range(25):
        assert {e.event_type for e in await events(db, f"CAc{i}")} == {"call.started", "call.completed"}


async def test_worker_waits_for_live_calls_but_not_forever(db: Database, tmp_path) -> None:
    """Extraction shares the LLM with live replies: it waits while calls are in progress, up to defer_s."""
    await add_acme(db)
    hooks = DatabaseHooks(settings(tmp_path), db)
    profile = await hooks.profile_for("CAd1", "+15550100001", "+15550100002")
    live = await hooks.profile_for("CAd2", "+15550100001", "+15550100002")
    await hooks.call_ended(summary(profile, "CAd1"))
    assert hooks.active_calls == 1  # CAd2 is still talking
    extractor = FixedExtractor(True)
    worker = PostCallWorker(db, extractor, busy=lambda: hooks.active_calls > 0, defer_s=1.0)  # type: ignore[arg-type]
    t0 = time.monotonic()
    assert await worker.process_pending() == 1
    assert 0.9 <= time.monotonic() - t0 < 3  # waited for the live call, then gave up waiting
    await hooks.call_ended(summary(live, "CAd2"))
    assert hooks.active_calls == 0
    t0 = time.monotonic()
    assert await worker.process_pending() == 1
    assert time.monotonic() - t0 < 0.5  # nobody on the line: at once
