"""Persistence of the gateway: agents, numbers, corrections, calls, extractions and the webhook outbox.

SQLAlchemy 2.0 (async) models in :mod:`gateway.db.models`, the engine in :mod:`gateway.db.engine`,
queries only in the repository modules (:mod:`gateway.db.repos`, :mod:`gateway.db.calls`,
:mod:`gateway.db.outbox_repo`), Alembic migrations in ``gateway/db/migrations``.
"""

from gateway.db.engine import Database, normalize_url

__all__ = ["Database", "normalize_url"]
