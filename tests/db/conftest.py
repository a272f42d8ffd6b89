"""Fixtures of the database tests: SQLite files and a private PostgreSQL server, both migrated."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import dbtest_support
import pytest
from dbtest_support import Process, shared_service

from gateway.db.engine import Database
from gateway.db.migrate import upgrade

# The PostgreSQL and database-URL fixtures shared by tests/db and tests/admin.
pg_server = dbtest_support.pg_server
db_url = dbtest_support.db_url


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
