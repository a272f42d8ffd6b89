"""Fixtures of the admin tests: the gateway app on SQLite or a private PostgreSQL, seeded calls."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "db"))  # the shared servers (dbtest_support)

from dbtest_support import PostgresServer, Process, shared_postgres, shared_service


@pytest.fixture(scope="session")
def pg_server() -> PostgresServer:
    """The private PostgreSQL server (one per test process)."""
    try:
        return shared_postgres()
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a new database on the private PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'switchboard.db'}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return await server.create_database()


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Process]:
    """The real STT, TTS and LLM services (one each per test process)."""
    logs = tmp_path_factory.mktemp("services")
    try:
        return {name: shared_service(name, logs) for name in ("llm", "stt", "tts")}
    except RuntimeError as exc:
        pytest.fail(str(exc))
