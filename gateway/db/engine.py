"""The async engine and session factory (SQLite via aiosqlite, PostgreSQL via asyncpg).

Imports nothing of the gateway: the URL comes in as a string (normalised here), and migrations
(:mod:`gateway.db.migrate`) build on this module, never the other way round.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = logging.getLogger(__name__)


def normalize_url(url: str) -> str:
    """Fill in the async driver: ``sqlite://`` → ``sqlite+aiosqlite://``, ``postgres(ql)://`` → ``+asyncpg``.

    URLs that already name a driver are returned unchanged.
    """
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.removeprefix("sqlite://")
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # The driver's default transaction mode stays: it BEGINs at the first write, so a transaction
    # never reads a snapshot and then needs the write lock (SQLITE_BUSY without waiting); writers
    # queue on busy_timeout instead. Repositories do not rely on reads before the first write
    # being isolated (claims are conditional UPDATEs).
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; survives a killed process
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An :class:`AsyncEngine` for ``url`` (normalised); SQLite gets its directory, WAL and foreign keys.

    Raises:
        sqlalchemy.exc.ArgumentError: the URL is not a database URL.
    """
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


class Database:
    """One database: ``engine`` and ``sessions`` (an ``async_sessionmaker``, ``expire_on_commit=False``).

    Args:
        url: SQLAlchemy URL (``sqlite:///data/switchboard.db``, ``postgresql://…``; drivers filled
            in by :func:`normalize_url`, so a plain ``GatewaySettings.resolved_database_url`` will do).

    Raises:
        sqlalchemy.exc.ArgumentError: the URL is not a database URL.
    """

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url)
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
