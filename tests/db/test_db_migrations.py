"""Alembic migrations on an empty SQLite file and an empty PostgreSQL database (a real server)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.pool import NullPool

from gateway.db.engine import make_engine
from gateway.db.migrate import current, downgrade, head, upgrade
from gateway.db.models import Base

ROOT = Path(__file__).resolve().parents[2]


async def _tables(url: str) -> set[str]:
    engine = make_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_upgrade_creates_every_table_on_an_empty_database(db_url: str) -> None:
    assert await current(db_url) is None
    assert await _tables(db_url) == set()
    await asyncio.to_thread(upgrade, db_url)
    assert await current(db_url) == head()
    assert await _tables(db_url) == set(Base.metadata.tables) | {"alembic_version"}


async def test_migrated_schema_matches_the_models(db_url: str) -> None:
    """Autogenerate finds nothing to do: the migrations and the ORM models agree."""
    await asyncio.to_thread(upgrade, db_url)
    engine = make_engine(db_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata)
            )
    finally:
        await engine.dispose()
    assert diff == []


async def test_downgrade_to_base_then_upgrade_again(db_url: str) -> None:
    await asyncio.to_thread(upgrade, db_url)
    await asyncio.to_thread(downgrade, db_url, "base")
    assert await _tables(db_url) <= {"alembic_version"}
    await asyncio.to_thread(upgrade, db_url)
    assert await current(db_url) == head()
    await asyncio.to_thread(upgrade, db_url)  # idempotent
    assert await current(db_url) == head()


def test_alembic_command_line_and_module_entry_point(tmp_path: Path) -> None:
    """`alembic upgrade head` (alembic.ini at the root) and `python -m gateway.db upgrade` both migrate."""
    cli_db, module_db = tmp_path / "cli.db", tmp_path / "module.db"
    alembic = Path(sys.executable).with_name("alembic")
    proc = subprocess.run(
        [str(alembic), "-x", f"url=sqlite:///{cli_db}", "upgrade", "head"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    env = {**os.environ, "GATEWAY_DATABASE_URL": f"sqlite:///{module_db}"}
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.db", "upgrade"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    for db in (cli_db, module_db):
        assert asyncio.run(current(f"sqlite:///{db}")) == head()
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.db", "--url", f"sqlite:///{module_db}", "current"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == head(), proc.stderr


async def test_agents_made_before_the_language_column_speak_english(db_url: str) -> None:
    """0002 adds ``agents.language``; rows already there get ``en``."""
    await asyncio.to_thread(upgrade, db_url, "0001")
    engine = make_engine(db_url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(
                "INSERT INTO agents (name, greeting, system_prompt, voice, facts, webhook_events, is_default,"
                " created_at, updated_at) VALUES ('Old', 'Hi', 'p', 'af_heart', '{}', '[]', false,"
                " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        await asyncio.to_thread(upgrade, db_url)
        async with engine.connect() as conn:
            language = (await conn.exec_driver_sql("SELECT language FROM agents WHERE name = 'Old'")).scalar_one()
    finally:
        await engine.dispose()
    assert language == "en"
