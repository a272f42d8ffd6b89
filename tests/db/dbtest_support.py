"""Real servers for the database and admin tests: a private PostgreSQL, the LLM, a webhook receiver.

Also the two fixtures both test dirs use, ``pg_server`` and ``db_url`` (their conftests import them).

PostgreSQL: ``initdb`` + ``pg_ctl`` from the machine's PostgreSQL binaries into a fresh temp dir
on a free port (as the ``postgres`` user when running as root: initdb refuses root), trust auth,
stopped with ``pg_ctl -m immediate`` at the end. Never the machine's own server.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from tools.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "webhooks.md"


def documented_verifier() -> Any:
    """``verify_webhook`` exactly as docs/webhooks.md prints it (the first ```python block)."""
    code = re.search(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    assert code is not None, "docs/webhooks.md has no python snippet"
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), str(DOCS), "exec"), namespace)
    return namespace["verify_webhook"]


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise RuntimeError(f"PostgreSQL binary {name} not found (install postgresql)")
    return candidates[-1]


class PostgresServer:
    """A throwaway PostgreSQL server (``start``/``stop``); ``url(db)`` gives an asyncpg URL."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="sb-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> None:
        """initdb and start; raises ``RuntimeError`` with the server's output on failure."""
        if self._as_postgres:
            shutil.chown(self.base, "postgres", "postgres")
        init = self._run([_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                          "--no-sync", "--no-instructions"])  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr}")
        opts = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        start = self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.base / "log"), "-w",
                           "-t", "60", "start"])  # fmt: skip
        if start.returncode != 0:
            log = (self.base / "log").read_text() if (self.base / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {start.stderr}\n{log}")

    def url(self, database: str = "postgres") -> str:
        """``postgresql+asyncpg://postgres@127.0.0.1:<port>/<database>``."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    async def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import asyncpg

        name = f"t_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres", database="postgres")
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)

    def stop(self) -> None:
        """Stop the server and remove its files."""
        self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class Process:
    """A service started as a subprocess (killed by ``stop``)."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self) -> str:
        """The last 3000 characters of its log."""
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def start_service(module: str, env: dict[str, str], port: int, log: Path, timeout_s: float = 180) -> Process:
    """``python -m module`` with ``env``; waits for ``GET /health`` 200.

    Raises:
        RuntimeError: the process exits or is not healthy in time (with its log).
    """
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    fh = log.open("ab")
    proc = subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=full_env, stdout=fh, stderr=subprocess.STDOUT)
    fh.close()
    service = Process(proc, port, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{module} exited with {proc.returncode}:\n{service.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return service
        time.sleep(0.2)
    service.stop()
    raise RuntimeError(f"{module} not healthy after {timeout_s}s:\n{service.tail()}")


@dataclass
class Received:
    """One webhook request as the receiver saw it."""

    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        """The body parsed."""
        return dict(json.loads(self.body))


@dataclass
class WebhookReceiver:
    """A real HTTP webhook receiver on a fixed port that can go down and come back.

    ``fail_first``: answer 503 to that many requests first. ``hold``: requests wait until
    ``release`` is set (to catch a sender mid-delivery).
    """

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    fail_first: int = 0
    hold: threading.Event | None = None
    arrived: threading.Event = field(default_factory=threading.Event)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The endpoint to configure as the webhook URL."""
        return f"http://127.0.0.1:{self.port}/hook"

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            body = await request.body()
            self.arrived.set()
            if self.hold is not None:
                await asyncio.to_thread(self.hold.wait, 60)
            if self.fail_first > 0:
                self.fail_first -= 1
                return Response(status_code=503)
            self.received.append(Received({k.lower(): v for k, v in request.headers.items()}, body))
            return Response(status_code=204)

        return app

    def start(self) -> None:
        """Serve in a thread until :meth:`stop`."""
        config = uvicorn.Config(self._app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("webhook receiver did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop serving (the port refuses connections afterwards)."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._server = None

    def keys(self) -> list[str]:
        """Idempotency keys received, in order (duplicates included)."""
        return [r.headers["idempotency-key"] for r in self.received]


_shared: dict[str, Any] = {}


def _stop_shared() -> None:
    for name in ("llm", "stt", "tts"):
        proc = _shared.pop(name, None)
        if proc is not None:
            proc.stop()
    pg = _shared.pop("pg", None)
    if pg is not None:
        pg.stop()


def shared_postgres() -> PostgresServer:
    """One private PostgreSQL server per test process (stopped at exit), shared by both test dirs."""
    if "pg" not in _shared:
        server = PostgresServer()
        server.start()
        _shared["pg"] = server
        atexit.register(_stop_shared)
    return _shared["pg"]  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def pg_server() -> PostgresServer:
    """The private PostgreSQL server (one per test process), for a whole session of db or admin tests."""
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


SERVICES = {
    "llm": ("services.llm", "LLM_PORT"),
    "stt": ("services.stt", "STT_PORT"),
    "tts": ("services.tts", "TTS_PORT"),
}


def shared_service(name: str, log_dir: Path) -> Process:
    """``llm``, ``stt`` or ``tts`` started once per test process on a free port (stopped at exit)."""
    if name not in _shared:
        module, port_var = SERVICES[name]
        port = free_port()
        _shared[name] = start_service(module, {port_var: str(port)}, port, log_dir / f"{name}.log", timeout_s=240)
        atexit.register(_stop_shared)
    return _shared[name]  # type: ignore[no-any-return]
