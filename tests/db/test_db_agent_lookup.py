"""The agent lookup under a burst: every call to a business's number gets that business's agent.

Twenty call starts at once, while other calls hold every pooled database connection, must all be
answered by the number's own agent; a lookup that fails or times out must never hand the call to
another business (the settings agent): the last known agent of that number answers, else a
polite "please call back" rejection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from gateway.after_call.runtime import DatabaseHooks
from gateway.agents.profile import AgentProfile
from gateway.config import GatewaySettings
from gateway.db.engine import Database
from gateway.db.repos import AgentRepo, NumberRepo

NUMBER = "+15550100002"
BURST = 20
SETTINGS_GREETING = GatewaySettings().agent.greeting


def settings(tmp_path) -> GatewaySettings:  # type: ignore[no-untyped-def]
    return GatewaySettings(data_dir=str(tmp_path), webhook_url="http://127.0.0.1:9/default", extraction_enabled=False)


async def add_agent(db: Database, name: str, number: str) -> int:
    async with db.sessions() as s, s.begin():
        agent = await AgentRepo(s).create(name=name, greeting=f"{name}, how can I help?", system_prompt="p",
                                          voice="am_michael")  # fmt: skip
        await NumberRepo(s).create(number, agent.id)
        return agent.id


@contextlib.asynccontextmanager
async def pool_exhausted(db: Database) -> AsyncIterator[None]:
    """Other calls hold every pooled connection (their writes, the outbox, extractions) until exit."""
    pool = db.engine.pool
    held = []
    for _ in range(pool.size() + pool._max_overflow):  # type: ignore[attr-defined]
        conn = await db.engine.connect()
        await conn.exec_driver_sql("SELECT 1")
        held.append(conn)
    try:
        yield
    finally:
        for conn in held:
            await conn.close()


async def burst(hooks: DatabaseHooks, prefix: str, to: str = NUMBER) -> list[AgentProfile]:
    return list(await asyncio.gather(*(hooks.profile_for(f"CA{prefix}{i}", "+15550100001", to) for i in range(BURST))))


def is_settings_agent(profile: AgentProfile) -> bool:
    return profile.agent_id is None and profile.greeting == SETTINGS_GREETING and profile.reject_message is None


async def test_twenty_simultaneous_call_starts_all_get_the_numbers_agent(db: Database, tmp_path) -> None:
    agent_id = await add_agent(db, "Acme Plumbing", NUMBER)
    hooks = DatabaseHooks(settings(tmp_path), db, lookup_timeout_s=1.0)
    cold = await burst(hooks, "cold")  # nothing cached yet: one read serves the whole burst
    assert [p.agent_id for p in cold] == [agent_id] * BURST
    await hooks.drain()
    async with pool_exhausted(db):  # busy: no connection is free for longer than the lookup may take
        t0 = time.monotonic()
        busy = await burst(hooks, "busy")
        assert time.monotonic() - t0 < 1.0
    assert [p.agent_id for p in busy] == [agent_id] * BURST
    assert all(p.name == "Acme Plumbing" and p.reject_message is None for p in busy)
    await hooks.drain()


async def test_a_lookup_that_times_out_answers_with_the_numbers_last_known_agent(db: Database, tmp_path) -> None:
    agent_id = await add_agent(db, "Acme Plumbing", NUMBER)
    hooks = DatabaseHooks(settings(tmp_path), db, lookup_timeout_s=0.5, cache_ttl_s=0.0)  # every call reloads
    assert (await hooks.profile_for("CAwarm", "+15550100001", NUMBER)).agent_id == agent_id
    await hooks.drain()
    async with pool_exhausted(db):
        late = await burst(hooks, "late")
    assert [p.agent_id for p in late] == [agent_id] * BURST  # the reload timed out; the last answer stands
    await hooks.drain()


async def test_a_failed_lookup_never_answers_as_another_business(db: Database, tmp_path) -> None:
    agent_id = await add_agent(db, "Acme Plumbing", NUMBER)
    hooks = DatabaseHooks(settings(tmp_path), db, lookup_timeout_s=0.5)
    async with pool_exhausted(db):  # first call of this gateway, and the database cannot answer
        cold = await burst(hooks, "down")
    for profile in cold:
        assert not is_settings_agent(profile), "a business's caller was answered as another business"
        assert profile.agent_id is None and profile.reject_message  # a polite "please call back"
        assert "call back" in profile.reject_message and profile.greeting == profile.reject_message
    await hooks.drain()
    assert (await hooks.profile_for("CAup", "+15550100001", NUMBER)).agent_id == agent_id  # back up


async def test_a_gateway_without_numbers_in_the_database_keeps_its_one_agent(db: Database, tmp_path) -> None:
    hooks = DatabaseHooks(settings(tmp_path), db, lookup_timeout_s=0.5, cache_ttl_s=0.0)
    assert is_settings_agent(await hooks.profile_for("CAone", "+15550100001", NUMBER))  # the only business
    await hooks.drain()
    async with pool_exhausted(db):
        late = await burst(hooks, "one")
    assert all(is_settings_agent(p) for p in late)  # no other business exists, so none is mistaken
    await hooks.drain()


async def test_a_database_never_reached_asks_callers_to_call_back(tmp_path) -> None:
    dead = Database("postgresql+asyncpg://postgres@127.0.0.1:9/none")  # nothing listens on port 9
    hooks = DatabaseHooks(settings(tmp_path), dead, lookup_timeout_s=1.0)
    t0 = time.monotonic()
    profile = await hooks.profile_for("CAdead", "+15550100001", NUMBER)
    assert time.monotonic() - t0 < 3
    assert not is_settings_agent(profile) and profile.reject_message and profile.agent_id is None
    await hooks.drain()
    await dead.dispose()


async def test_admin_changes_are_seen_at_once_through_invalidate(db: Database, tmp_path) -> None:
    acme = await add_agent(db, "Acme Plumbing", NUMBER)
    hooks = DatabaseHooks(settings(tmp_path), db, cache_ttl_s=3600.0)
    assert (await hooks.profile_for("CAi1", "+15550100001", NUMBER)).agent_id == acme
    bolt = await add_agent(db, "Bolt Electric", "+15550100003")
    async with db.sessions() as s, s.begin():
        [row] = await NumberRepo(s).all(acme)
        await NumberRepo(s).update(row, agent_id=bolt)
    assert (await hooks.profile_for("CAi2", "+15550100001", NUMBER)).agent_id == acme  # cached
    hooks.invalidate([NUMBER])  # what the admin API does after a change
    assert (await hooks.profile_for("CAi3", "+15550100001", NUMBER)).agent_id == bolt
    await hooks.drain()


async def test_a_spanish_agent_answers_its_number_in_spanish(db: Database, tmp_path) -> None:
    """The agent's language column reaches the call's profile (the conversation speaks it)."""
    async with db.sessions() as s, s.begin():
        agent = await AgentRepo(s).create(name="Fontanería Ruiz", greeting="Fontanería Ruiz, ¿en qué le ayudo?",
                                          system_prompt="p", voice="ef_dora", language="es")  # fmt: skip
        await NumberRepo(s).create(NUMBER, agent.id)
    hooks = DatabaseHooks(settings(tmp_path), db)
    profile = await hooks.profile_for("CAes1", "+15550100001", NUMBER)
    assert profile.language == "es" and profile.voice == "ef_dora" and profile.agent_id == agent.id
    await hooks.drain()
