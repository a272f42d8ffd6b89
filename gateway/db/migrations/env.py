"""Alembic environment: async engine (aiosqlite/asyncpg), batch mode for SQLite, one migrator at a time.

The URL is ``-x url=...``, the config's ``sqlalchemy.url`` (set by :mod:`gateway.db.migrate`), or
the gateway settings (``GATEWAY_DATABASE__URL``, else the SQLite file in the data dir), always passed
through :func:`~gateway.db.engine.normalize_url`. The settings are imported only in that last case
(a bare ``alembic upgrade head``), inside :func:`_url`: gateway/db imports no config at module level.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from gateway.db.engine import make_engine, normalize_url
from gateway.db.models import Base

MIGRATION_LOCK_ID = 7_150_042
"""PostgreSQL advisory lock held while migrating, so gateway replicas starting together take turns."""

target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        from gateway.config import GatewaySettings

        url = GatewaySettings().resolved_database_url
    return normalize_url(url)


def run_migrations_offline() -> None:
    """``alembic upgrade head --sql``: print the SQL."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})"))
        context.run_migrations()


async def run_migrations_online() -> None:
    """Migrate over an async connection."""
    engine = make_engine(_url(), poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
