"""Fixtures of the admin tests: the gateway app on SQLite or a private PostgreSQL, seeded calls."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "db"))  # the shared servers (dbtest_support)

import dbtest_support
from dbtest_support import Process, shared_service

# The PostgreSQL and database-URL fixtures shared by tests/db and tests/admin.
pg_server = dbtest_support.pg_server
db_url = dbtest_support.db_url


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Process]:
    """The real STT, TTS and LLM services (one each per test process)."""
    logs = tmp_path_factory.mktemp("services")
    try:
        return {name: shared_service(name, logs) for name in ("llm", "stt", "tts")}
    except RuntimeError as exc:
        pytest.fail(str(exc))
