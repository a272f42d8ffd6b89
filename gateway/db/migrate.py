"""Alembic, driven from code: ``upgrade``/``downgrade``/``current`` for a database URL.

The same migrations run from the command line with ``alembic upgrade head`` (``alembic.ini`` at the
repository root; the URL comes from ``GATEWAY_DATABASE_URL`` or the default SQLite file), or with
``python -m gateway.db.migrate [revision]``.
"""

from __future__ import annotations

import sys

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.pool import NullPool

from gateway.db.engine import MIGRATIONS_DIR, make_engine, normalize_url


def alembic_config(url: str) -> Config:
    """An Alembic :class:`Config` for ``url`` with the package's migrations (no ini file needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate ``url`` up to ``revision``. Blocking: call from a thread inside an event loop."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Migrate ``url`` down to ``revision`` (``base`` drops every table)."""
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


def main(argv: list[str] | None = None) -> int:
    """``python -m gateway.db.migrate [revision]``: upgrade the configured database."""
    from gateway.config import GatewaySettings

    args = sys.argv[1:] if argv is None else argv
    upgrade(GatewaySettings().resolved_database_url, args[0] if args else "head")
    return 0


if __name__ == "__main__":
    sys.exit(main())
