"""Persistence of the gateway: agents, numbers, corrections, calls, extractions and the webhook outbox.

SQLAlchemy 2.0 (async) models in :mod:`gateway.db.models`, the engine in :mod:`gateway.db.engine`,
queries only in the repositories (:mod:`gateway.db.repos`), Alembic migrations in
``gateway/db/migrations`` driven by :mod:`gateway.db.migrate` (``python -m gateway.db upgrade``).
Nothing here imports the conversation; only the command line reads the gateway's settings.
"""

from gateway.db.engine import Database, normalize_url

__all__ = ["Database", "normalize_url"]
