"""Fixtures of the database tests: SQLite files and a private PostgreSQL server, both migrated."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dbtest_support import PostgresServer, Process, shared_postgres, shared_service

from gateway.db.engine import Database
from gateway.db.migrate import upgrade


@pytest.fixture(scope="session")
def pg_server() -> PostgresServer:
    """A PostgreSQL server of our own (initdb in a temp dir, free port), for the whole session."""
    try:
        return shared_postgres()
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL: a SQLite file, or a new database on the private PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'switchboard.db'}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return await server.create_database()


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """The database at ``db_url``, migrated to head."""
    await asyncio.to_thread(upgrade, db_url)
    database = Database(db_url)
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Process:
    """The real LLM (``python -m services.llm``, the project's GGUF) on a free port."""
    try:
        return shared_service("llm", tmp_path_factory.mktemp("llm"))
    except RuntimeError as exc:
        pytest.fail(str(exc))
