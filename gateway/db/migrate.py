"""Alembic, driven from code: ``upgrade``/``downgrade``/``current``/``head`` for a database URL.

The same migrations run from the command line with ``python -m gateway.db upgrade`` (see
:mod:`gateway.db.__main__`) or ``alembic upgrade head`` (``alembic.ini`` at the repository root).
Every URL is normalised here (:func:`~gateway.db.engine.normalize_url`), so a plain
``sqlite:///…`` or ``postgresql://…`` will do.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.pool import NullPool

from gateway.db.engine import Database, make_engine, normalize_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
"""The Alembic script directory shipped inside the package (the container image has it)."""


def alembic_config(url: str) -> Config:
    """An Alembic :class:`Config` for ``url`` (normalised) with the package's migrations (no ini file needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate ``url`` up to ``revision``. Blocking (Alembic runs its own event loop): call it from a
    worker thread inside an event loop, or use :func:`upgrade_database`.

    Raises:
        Exception: the database is unreachable or a migration fails (nothing of that migration stays).
    """
    command.upgrade(alembic_config(url), revision)


async def upgrade_database(db: Database, revision: str = "head") -> None:
    """:func:`upgrade` ``db`` in a worker thread (the gateway's start-up, ``GATEWAY_DATABASE__AUTO_MIGRATE``).

    Raises:
        Exception: as :func:`upgrade`.
    """
    await asyncio.to_thread(upgrade, db.url, revision)


def downgrade(url: str, revision: str) -> None:
    """Migrate ``url`` down to ``revision`` (``base`` drops every table). Blocking, as :func:`upgrade`."""
    command.downgrade(alembic_config(url), revision)


def head() -> str:
    """The newest revision id."""
    rev = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert rev is not None
    return rev


async def current(url: str) -> str | None:
    """The revision ``url`` is at (``None`` for an empty database)."""
    engine = make_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
    finally:
        await engine.dispose()
