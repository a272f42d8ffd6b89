"""The services' shared error handling (shared/errors.py): a client that hangs up mid-body."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
import uvicorn
from fastapi import FastAPI, Request

from shared.errors import install_error_handlers
from tools.stack import free_port


async def test_a_client_gone_while_its_body_is_read_ends_the_request_quietly(caplog: pytest.LogCaptureFixture) -> None:
    app = FastAPI()
    install_error_handlers(app)
    bodies: list[int] = []
    reached = asyncio.Event()

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        reached.set()
        bodies.append(len(await request.body()))  # the client hangs up half-way through
        return {"bytes": bodies[-1]}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        with caplog.at_level(logging.ERROR):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"POST /raw HTTP/1.1\r\nHost: x\r\nContent-Length: 32000\r\n\r\n" + b"\0" * 1000)
            await asyncio.wait_for(reached.wait(), 5)
            await asyncio.sleep(0.1)
            sock.close()
            await asyncio.sleep(0.3)
        assert bodies == []  # the handler never got a (truncated) body
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    finally:
        server.should_exit = True
        await serving
