"""``python -m gateway.db``: migrate the configured database by hand (the gateway also does it at start-up).

::

    python -m gateway.db upgrade [REVISION]     # default: head
    python -m gateway.db downgrade REVISION     # base drops every table
    python -m gateway.db current                # prints the revision the database is at

The URL is ``GATEWAY_DATABASE__URL`` (or ``DATABASE_URL``), else the SQLite file in
``GATEWAY_DATA_DIR``; ``--url`` overrides both. This command line is the one place in
``gateway/db`` that reads the gateway's settings (inside :func:`main`, so importing the package
never imports :mod:`gateway.config`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from gateway.db.engine import normalize_url
from gateway.db.migrate import current, downgrade, upgrade


def _configured_url() -> str:
    from gateway.config import GatewaySettings

    return GatewaySettings().resolved_database_url


def main(argv: list[str] | None = None) -> int:
    """Run the command in ``argv`` (default ``sys.argv[1:]``); returns the exit status (0 on success).

    Raises:
        Exception: the database is unreachable or a migration fails (the traceback is the message).
    """
    parser = argparse.ArgumentParser(prog="python -m gateway.db", description="Migrate the gateway's database.")
    parser.add_argument("--url", help="database URL (default: the gateway settings')")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("upgrade", help="migrate up (default: to head)")
    up.add_argument("revision", nargs="?", default="head")
    down = commands.add_parser("downgrade", help="migrate down to REVISION")
    down.add_argument("revision")
    commands.add_parser("current", help="print the revision the database is at")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    url = normalize_url(args.url or _configured_url())
    if args.command == "upgrade":
        upgrade(url, args.revision)
    elif args.command == "downgrade":
        downgrade(url, args.revision)
    else:
        sys.stdout.write(f"{asyncio.run(current(url)) or '(empty)'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
