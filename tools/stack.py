"""Run Redis and every Switchboard service as local processes (``make dev``, ``make call``, e2e tests).

The same commands the containers run: ``python -m services.llm|services.stt|services.tts|gateway``,
plus ``redis-server`` and a development webhook receiver. A service whose port already answers
its health check is reused (e.g. ``make call`` while ``make dev`` runs, or the machine's Redis on
6379) and is left running on exit; what this module started, it stops (SIGTERM, then SIGKILL).

``python -m tools.stack`` runs everything in the foreground with prefixed logs; Ctrl-C stops all.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from shared.config import PROJECT_ROOT

log = logging.getLogger("stack")


_HANDED_OUT: set[int] = set()


DEV_ADMIN_KEY = "switchboard-local-dev-admin-key"
"""The admin key of gateways the local stack starts when ``GATEWAY_ADMIN_API_KEY`` is not set."""


def admin_key() -> str:
    """The admin key local tools send (``GATEWAY_ADMIN_API_KEY``, else :data:`DEV_ADMIN_KEY`)."""
    return os.environ.get("GATEWAY_ADMIN_API_KEY") or DEV_ADMIN_KEY


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux; 32768–60999 by default)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """An unused loopback TCP port for a server that starts a few seconds later.

    Chosen below the kernel's ephemeral range: a port the kernel hands out (``bind(0)``) can be
    taken by any outgoing connection before the server binds it (seen in CI: "address already in
    use"), and never twice by this process.
    """
    low = _ephemeral_range()[0]
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10_000, max(low, 10_001))
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as s:  # no luck below the range: let the kernel pick
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def redis_ping(port: int) -> bool:
    """True if a Redis server answers PING on ``127.0.0.1:port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def http_healthy(port: int, path: str = "/health") -> bool:
    """True if ``GET http://127.0.0.1:port/health`` answers 200."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Ports:
    """Loopback ports; defaults are the project's documented ones."""

    redis: int = 6379
    llm: int = 8000
    stt: int = 8001
    tts: int = 8002
    gateway: int = 8080
    webhook: int = 8090

    @classmethod
    def free(cls) -> Ports:
        """All free ports (for tests that must not touch running services)."""
        return cls(*(free_port() for _ in range(6)))


@dataclass
class Service:
    """One process: how to start it and how to know it is up."""

    name: str
    argv: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    redis: bool = False
    proc: subprocess.Popen[bytes] | None = None
    reused: bool = False

    def healthy(self) -> bool:
        """Health check: PING for Redis, ``GET /health`` for the rest."""
        return redis_ping(self.port) if self.redis else http_healthy(self.port)


class Stack:
    """Start/stop the whole stack.

    Args:
        ports: where each service listens.
        reuse: reuse services already healthy on their port instead of failing.
        log_dir: write each service's output to ``<log_dir>/<name>.log``; ``None`` streams it to
            this process's stdout with a ``name |`` prefix.
        env: extra environment for every service (e.g. ``GATEWAY_ENDPOINT_SILENCE_MS``).
        webhook_sink: also start the development webhook receiver.
        only: start just these services (e.g. ``{"redis", "stt", "tts"}`` for component tests).
    """

    def __init__(
        self,
        ports: Ports | None = None,
        reuse: bool = True,
        log_dir: Path | None = None,
        env: dict[str, str] | None = None,
        webhook_sink: bool = True,
        only: set[str] | None = None,
    ) -> None:
        self.ports = ports or Ports()
        self.reuse = reuse
        self.log_dir = log_dir
        self.extra_env = env or {}
        self.services = [s for s in self._services(webhook_sink) if only is None or s.name in only]
        self._log_files: list[IO[bytes]] = []

    @property
    def gateway_url(self) -> str:
        """``http://127.0.0.1:<gateway port>``."""
        return f"http://127.0.0.1:{self.ports.gateway}"

    @property
    def webhook_url(self) -> str:
        """Where the gateway posts webhooks (the development sink)."""
        return f"http://127.0.0.1:{self.ports.webhook}/webhook"

    @property
    def redis_url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.ports.redis}/0"

    def _services(self, webhook_sink: bool) -> list[Service]:
        p = self.ports
        py = sys.executable
        redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
        services = [
            Service(
                "redis",
                [redis_server, "--port", str(p.redis), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                p.redis,
                redis=True,
            ),
            Service("llm", [py, "-m", "services.llm"], p.llm, {"LLM_PORT": str(p.llm)}),
            Service("stt", [py, "-m", "services.stt"], p.stt, {"STT_PORT": str(p.stt)}),
            Service("tts", [py, "-m", "services.tts"], p.tts, {"TTS_PORT": str(p.tts)}),
        ]
        if webhook_sink:
            services.append(
                Service("webhook", [py, "-m", "tools.webhook_sink"], p.webhook, {"WEBHOOK_SINK_PORT": str(p.webhook)})
            )
        gateway = self.gateway_service("gateway", p.gateway)
        if webhook_sink:
            gateway.env["GATEWAY_WEBHOOK_URL"] = self.webhook_url
        services.append(gateway)
        return services

    def gateway_service(self, name: str, port: int, stt_url: str | None = None) -> Service:
        """A gateway process on ``port`` wired to this stack's Redis, LLM, TTS and STT (or
        ``stt_url``); more than one can serve the same stack behind a load balancer."""
        p = self.ports
        env = {
            "GATEWAY_PORT": str(port),
            "GATEWAY_STT_URL": stt_url or f"http://127.0.0.1:{p.stt}",
            "GATEWAY_TTS_URL": f"http://127.0.0.1:{p.tts}",
            "GATEWAY_LLM_URL": f"http://127.0.0.1:{p.llm}/v1",
            "GATEWAY_REDIS_URL": self.redis_url,
            "GATEWAY_ADMIN_API_KEY": admin_key(),
        }
        return Service(name, [sys.executable, "-m", "gateway"], port, env)

    def service(self, name: str) -> Service:
        """The service called ``name``."""
        return next(s for s in self.services if s.name == name)

    def _spawn(self, svc: Service) -> None:
        env = {**os.environ, **self.extra_env, **svc.env, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = str(PROJECT_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            fh = (self.log_dir / f"{svc.name}.log").open("ab")
            self._log_files.append(fh)
            svc.proc = subprocess.Popen(
                svc.argv, cwd=PROJECT_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
            )
        else:
            svc.proc = subprocess.Popen(
                svc.argv,
                cwd=PROJECT_ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            threading.Thread(target=_pump, args=(svc.name, svc.proc), daemon=True).start()

    def start(self, timeout_s: float = 180.0) -> None:
        """Start (or reuse) every service and wait until all are healthy.

        A program that owns a stack and keeps SIGTERM's default action (a benchmark, ``make call``)
        gets SIGTERM turned into ``SystemExit`` from here on, so its ``finally: stack.stop()`` runs:
        the services run in process groups of their own and would otherwise outlive it.

        Raises:
            RuntimeError: a port is taken by something unhealthy, a process died, or timeout.
        """
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            # Model services load in parallel; the gateway starts once its upstreams are up.
            for svc in self.services:
                if svc.name == "gateway" and len(self.services) > 1:
                    self._wait([s for s in self.services if s.name != "gateway"], timeout_s)
                if self.reuse and svc.healthy():
                    svc.reused = True
                    log.info("%-8s reusing the one on port %d", svc.name, svc.port)
                    continue
                if port_open(svc.port):
                    raise RuntimeError(f"port {svc.port} for {svc.name} is taken by something that is not healthy")
                self._spawn(svc)
                log.info("%-8s starting on port %d", svc.name, svc.port)
            self._wait(self.services, timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait(self, services: list[Service], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = [s for s in services if not s.reused]
        while pending:
            for svc in list(pending):
                if svc.proc is not None and svc.proc.poll() is not None:
                    raise RuntimeError(f"{svc.name} exited with code {svc.proc.returncode}; see its log")
                if svc.healthy():
                    pending.remove(svc)
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"not healthy after {timeout_s}s: {[s.name for s in pending]}")
            time.sleep(0.2)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM what this stack started (gateway first), then SIGKILL stragglers."""
        started = [s for s in reversed(self.services) if s.proc is not None and s.proc.poll() is None]
        for svc in started:
            assert svc.proc is not None
            try:
                os.killpg(svc.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        for svc in started:
            assert svc.proc is not None
            try:
                svc.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0fs; killing it", svc.name, grace_s)
                try:
                    os.killpg(svc.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                svc.proc.wait()
        for fh in self._log_files:
            fh.close()
        self._log_files.clear()

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pump(name: str, proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(f"{name:>8} | {line.decode(errors='replace')}")
        sys.stdout.flush()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    """``make dev``: run the stack in the foreground until Ctrl-C or a service dies."""
    from shared.logs import setup_logging

    setup_logging("stack")
    stack = Stack(log_dir=None)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stack.start()
    except RuntimeError as exc:
        log.error("%s", exc)
        return 1
    log.info("all services up: gateway %s, webhooks %s — Ctrl-C stops them", stack.gateway_url, stack.webhook_url)
    code = 0
    while not stop.wait(0.5):
        dead = [s for s in stack.services if s.proc is not None and s.proc.poll() is not None]
        if dead:
            log.error("%s exited (code %s); stopping the stack", dead[0].name, dead[0].proc and dead[0].proc.returncode)
            code = 1
            break
    log.info("stopping…")
    stack.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
