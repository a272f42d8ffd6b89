"""``python -m gateway``: serve the gateway with uvicorn on ``GATEWAY_HOST:GATEWAY_PORT``.

``GATEWAY_WORKERS`` > 1 runs that many uvicorn worker processes on the one port. Before they
start, this process applies the database migrations once (workers racing to ``upgrade head`` on
one SQLite file would fail) and points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder, so that
``/metrics``, served by whichever worker accepts the scrape, reports every worker
(https://prometheus.github.io/client_python/multiprocess/).
"""

from __future__ import annotations

import os
import shutil
import tempfile

from gateway.config import GatewaySettings
from shared.metrics import MULTIPROC_ENV
from shared.serve import serve


def prepare_workers(settings: GatewaySettings) -> None:
    """Set up the environment the workers inherit: migrated database, multiprocess metrics folder.

    Raises:
        Exception: the database is unreachable or a migration fails (nothing is started).
    """
    if settings.database.enabled and settings.database.auto_migrate:
        from gateway.db.migrate import upgrade

        upgrade(settings.resolved_database_url)
        os.environ["GATEWAY_DATABASE_AUTO_MIGRATE"] = "false"
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder:
        folder = tempfile.mkdtemp(prefix="switchboard-metrics-")
        os.environ[MULTIPROC_ENV] = folder
    else:  # a folder left by an earlier run would add its counts to this one's
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder, exist_ok=True)


def main() -> None:
    """Run the gateway in the foreground (``GATEWAY_WORKERS`` processes)."""
    settings = GatewaySettings()
    if settings.workers > 1:
        prepare_workers(settings)
    serve(
        "gateway",
        "gateway:create_app",
        settings,
        workers=settings.workers,
        ws_max_size=settings.ws_max_message_bytes,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )


if __name__ == "__main__":
    main()
