"""OpenAI-shaped error bodies for the STT/TTS services, their queue-full error, and typed upstream
errors for clients.

Error body shape (as the OpenAI API returns it)::

    {"error": {"message": "...", "type": "invalid_request_error", "param": "file", "code": null}}
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

log = logging.getLogger(__name__)

CLIENT_CLOSED_REQUEST = 499
"""The status nginx logs for a request whose client went away before the answer (nobody reads it)."""


class APIError(Exception):
    """An error a service returns to its client as an OpenAI-shaped JSON body.

    Args:
        status: HTTP status code.
        message: human-readable explanation.
        type: OpenAI error type (``invalid_request_error``, ``server_error``…).
        param: the request field at fault, if any.
        code: a short machine-readable code, if any.
        headers: extra response headers (e.g. ``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {message, type, param, code}}``."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def install_error_handlers(app: FastAPI) -> None:
    """Make ``APIError`` and request validation errors answer with OpenAI-shaped bodies, and a
    client that hangs up while its body is still being read (the gateway cancelling an early
    transcription or a turn check) end the request quietly with 499 instead of a 500 traceback."""

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, _: ClientDisconnect) -> Response:
        log.debug("client went away while sending %s %s", request.method, request.url.path)
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "form")]
        param = ".".join(loc) or None
        msg = f"{param}: {first.get('msg', 'invalid request')}" if param else str(first.get("msg", "invalid"))
        err = APIError(400, msg, param=param, code="invalid_value")
        return JSONResponse(err.body(), status_code=400)


class QueueFullError(Exception):
    """A service's work queue is full (STT transcriptions, TTS syntheses): answer 503 with ``Retry-After``.

    Args:
        depth: how many jobs are waiting.
        retry_after_s: seconds the client should wait before trying again.
        what: what the queue holds, for the message (``"transcription"``, ``"synthesis"``).
    """

    def __init__(self, depth: int, retry_after_s: int = 1, what: str = "work") -> None:
        super().__init__(f"the {what} queue is full ({depth} waiting); retry in {retry_after_s}s")
        self.depth = depth
        self.retry_after_s = retry_after_s


class UpstreamError(Exception):
    """A call to another service (STT, TTS, LLM, webhook receiver) failed.

    Attributes:
        service: which upstream (``"stt"``, ``"tts"``, ``"llm"``…).
        retryable: ``True`` for timeouts, connection errors, 429 and 5xx; ``False`` for other 4xx,
            where sending the same request again cannot succeed.
        status: the HTTP status if the upstream answered, else ``None``.
    """

    def __init__(self, service: str, message: str, retryable: bool, status: int | None = None) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.retryable = retryable
        self.status = status

    @classmethod
    def from_status(cls, service: str, status: int, text: str) -> UpstreamError:
        """Build from an HTTP error answer; 408/429/5xx are retryable."""
        retryable = status in (408, 429) or status >= 500
        return cls(service, f"HTTP {status}: {text[:200]}", retryable=retryable, status=status)
