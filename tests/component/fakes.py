"""Scripted peers for component tests: an OpenAI-compatible LLM and Twilio's REST API.

Both are real HTTP servers (uvicorn in a thread) so the gateway's own clients (the `openai`
package, the `twilio` package) talk to them unchanged.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from gateway.upstream.llm import PREWARM_HEADER
from tools.stack import free_port


class ServerThread:
    """Run an ASGI app with uvicorn on a free loopback port in a daemon thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class FakeLLM:
    """Streams scripted replies word by word (``token_delay_s`` apart) and records every request.

    A reply is a string (content only; it may contain Hermes ``<tool_call>`` text, as llama.cpp
    returns it) or a dict ``{"text": str, "tool_calls": [{"name": ..., "arguments": {...}}]}``
    whose calls are streamed as OpenAI ``tool_calls`` deltas, as vLLM's hermes parser returns them,
    or ``{"status": 500}``: an OpenAI-shaped error answer with that status (an LLM outage).
    A gateway's prewarm request (header ``X-Switchboard-Prewarm``) takes no scripted reply: it is
    recorded in ``prewarms`` and answered with one unstreamed token. Any other unstreamed request
    (the post-call extraction) is recorded in ``completions`` and answered with ``completion_reply``.
    """

    def __init__(self, default_reply: str = "Okay. How can I help?", token_delay_s: float = 0.01) -> None:
        self.replies: list[str | dict[str, Any]] = []
        self.default_reply = default_reply
        self.token_delay_s = token_delay_s
        self.requests: list[dict[str, Any]] = []
        self.prewarms: list[dict[str, Any]] = []
        self.completions: list[dict[str, Any]] = []
        self.completion_reply = '{"summary": "A caller talked to the agent."}'
        self.app = FastAPI()
        self.app.post("/v1/chat/completions", response_model=None)(self._chat)
        self.app.get("/health")(lambda: {"status": "ok"})

    async def _chat(self, request: Request) -> StreamingResponse | JSONResponse:
        body = await request.json()
        if request.headers.get(PREWARM_HEADER):
            self.prewarms.append(body)
            message = {"role": "assistant", "content": "O"}
            choice = {"index": 0, "message": message, "finish_reason": "length"}
            return JSONResponse(
                {"id": "p1", "object": "chat.completion", "created": 0, "model": body["model"], "choices": [choice]}
            )
        if not body.get("stream"):
            self.completions.append(body)
            message = {"role": "assistant", "content": self.completion_reply}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return JSONResponse(
                {"id": "x1", "object": "chat.completion", "created": 0, "model": body["model"], "choices": [choice]}
            )
        self.requests.append(body)
        reply = self.replies.pop(0) if self.replies else self.default_reply
        if isinstance(reply, dict) and "status" in reply:
            error = {"error": {"message": "scripted outage", "type": "server_error", "code": reply["status"]}}
            return JSONResponse(error, status_code=int(reply["status"]))
        text = reply if isinstance(reply, str) else reply.get("text", "")
        tool_calls = [] if isinstance(reply, str) else reply.get("tool_calls", [])

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            data = {
                "id": "c1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(data)}\n\n"

        async def events():
            for i, word in enumerate(text.split(" ") if text else []):
                yield chunk({"content": word if i == 0 else " " + word})
                await asyncio.sleep(self.token_delay_s)
            for index, call in enumerate(tool_calls):  # split arguments across two deltas, as vLLM does
                args = json.dumps(call.get("arguments", {}))
                head = {"name": call["name"], "arguments": args[: len(args) // 2]}
                yield chunk(
                    {"tool_calls": [{"index": index, "id": f"call_{index}", "type": "function", "function": head}]}
                )
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": args[len(args) // 2 :]}}]})
            yield chunk({}, "tool_calls" if tool_calls else "stop") + "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    def last_messages(self) -> list[dict[str, str]]:
        return list(self.requests[-1]["messages"])


class FakeTwilioREST:
    """Records ``POST /2010-04-01/Accounts/{sid}/Calls/{call}.json`` updates (hang-up, transfer)."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, dict[str, str]]] = []
        self.app = FastAPI()
        self.app.post("/2010-04-01/Accounts/{account}/Calls/{call_sid}.json", response_model=None)(self._update)

    async def _update(self, account: str, call_sid: str, request: Request) -> JSONResponse:
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.updates.append((call_sid, form))
        return JSONResponse({"sid": call_sid, "account_sid": account, "status": form.get("Status", "in-progress")})


class FakeWebhook:
    """Records every JSON body POSTed to ``/webhook`` (the settings-only hooks' ``call.completed``)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.app = FastAPI()
        self.app.post("/webhook", response_model=None)(self._hook)

    async def _hook(self, request: Request) -> JSONResponse:
        self.bodies.append(await request.json())
        return JSONResponse({"ok": True})

    def completed(self, call_sid: str) -> dict[str, Any] | None:
        """The ``call.completed`` body for ``call_sid``, if it arrived."""
        return next(
            (b for b in self.bodies if b.get("event") == "call.completed" and b.get("call_sid") == call_sid), None
        )
