"""A calibrated LLM stand-in for capacity runs where the real engine cannot run (the lent GPU).

It serves OpenAI's ``/v1/chat/completions`` (streaming and not) with **real replies** — recorded
from the project's own model (Qwen2.5-0.5B-Instruct, ``--record``), with their real token counts —
and **real timings**: a discrete-event model of a continuous-batching engine whose step costs
come from a measurement on the target GPU (``bench/gpu/calibrate_llm.py``):

* requests that arrived while a step ran are prefilled together in the next step, costing
  ``prefill_ms(total prompt tokens)``; each gets its first token when that step ends (TTFT);
* otherwise one decode step gives every active stream its next token, costing
  ``decode_ms(active streams)``;
* both interpolate linearly in the calibration table (vLLM's scheduler does the same: prefills
  first, then decode steps over the running batch — https://docs.vllm.ai/en/latest/design/).

It is not a language model: it picks the recorded reply whose question shares the most words
with the caller's last message. Nothing here may be used outside benchmarks.

Usage: ``python -m bench.llm_standin --calibration docs/llm-calibration-h100.json [--port 8000]``
       ``python -m bench.llm_standin --record`` (against a running real LLM on ``--llm-url``)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

REPLIES_PATH = Path(__file__).parent / "data" / "llm_replies.json"
CHARS_PER_TOKEN = 4.0
"""Prompt length estimate (Qwen2.5 tokenizer, English): ~4 characters per token."""


@dataclass
class Calibration:
    """Step costs of the engine being imitated, from a real measurement.

    Attributes:
        prefill_tokens / prefill_ms: prompt tokens in one prefill step → its duration (ms).
        decode_batch / decode_ms: streams in one decode step → its duration (ms).
        source: how and where it was measured (printed in every benchmark report).
    """

    prefill_tokens: list[float]
    prefill_ms: list[float]
    decode_batch: list[float]
    decode_ms: list[float]
    source: str

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read the JSON written by ``bench/gpu/calibrate_llm.py``."""
        data = json.loads(Path(path).read_text())
        return cls(
            [float(x) for x in data["prefill"]["tokens"]],
            [float(x) for x in data["prefill"]["ms"]],
            [float(x) for x in data["decode"]["batch"]],
            [float(x) for x in data["decode"]["ms"]],
            str(data["source"]),
        )

    def prefill(self, tokens: int) -> float:
        """Seconds for one prefill step over ``tokens`` prompt tokens."""
        last = self.prefill_tokens[-1]
        if tokens > last:  # past the table: cost grows linearly from the last point
            return self.prefill_ms[-1] * tokens / last / 1000
        return float(np.interp(tokens, self.prefill_tokens, self.prefill_ms)) / 1000

    def decode(self, batch: int) -> float:
        """Seconds for one decode step over ``batch`` streams."""
        last = self.decode_batch[-1]
        if batch > last:  # past the table: assume cost grows linearly from the last point
            return self.decode_ms[-1] * batch / last / 1000
        return float(np.interp(batch, self.decode_batch, self.decode_ms)) / 1000


@dataclass
class _Stream:
    prompt_tokens: int
    tokens: list[str]
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    sent: int = 0


class Engine:
    """The continuous-batching clock: one task runs prefill and decode steps."""

    def __init__(self, calibration: Calibration) -> None:
        self.cal = calibration
        self._waiting: list[_Stream] = []
        self._active: list[_Stream] = []
        self._wake = asyncio.Event()
        self.steps = 0

    def submit(self, prompt_tokens: int, tokens: list[str]) -> _Stream:
        """Queue a request; its tokens arrive on the returned stream's queue (``None`` = done)."""
        stream = _Stream(prompt_tokens, tokens)
        self._waiting.append(stream)
        self._wake.set()
        return stream

    async def run(self) -> None:
        """Step forever: prefill whatever waits, else decode the running batch."""
        while True:
            if not self._waiting and not self._active:
                self._wake.clear()
                await self._wake.wait()
            if self._waiting:
                batch, self._waiting = self._waiting, []
                await asyncio.sleep(self.cal.prefill(sum(s.prompt_tokens for s in batch)))
                self._active += batch
                emit = batch
            else:
                await asyncio.sleep(self.cal.decode(len(self._active)))
                emit = self._active
            self.steps += 1
            for s in list(emit):
                if s.sent < len(s.tokens):
                    s.queue.put_nowait(s.tokens[s.sent])
                    s.sent += 1
                if s.sent >= len(s.tokens):
                    s.queue.put_nowait(None)
                    self._active.remove(s)


def tokenize(text: str) -> list[str]:
    """Split a reply into token-sized pieces (words with their leading space, punctuation)."""
    return re.findall(r"\s*[\w']+|\s*[^\w\s]", text)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


class Replies:
    """Recorded replies of the real model, looked up by the caller's last message."""

    def __init__(self, path: Path = REPLIES_PATH) -> None:
        data = json.loads(path.read_text())
        self.model = str(data["model"])
        self.items: list[dict[str, Any]] = list(data["replies"])

    def pick(self, user_text: str) -> dict[str, Any]:
        """The recorded exchange whose question shares the most words with ``user_text``."""
        said = _words(user_text)
        return max(self.items, key=lambda r: len(said & _words(r["user"])))


def create_app(calibration: Calibration, replies: Replies) -> FastAPI:
    """The FastAPI app: ``/v1/chat/completions``, ``/v1/models``, ``/health``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = Engine(calibration)
        task = asyncio.create_task(app.state.engine.run())
        yield
        task.cancel()

    app = FastAPI(title="Switchboard LLM stand-in (benchmarks only)", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "calibration": calibration.source}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": replies.model, "object": "model", "owned_by": "standin"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        messages = body.get("messages", [])
        prompt_chars = sum(len(str(m.get("content") or "")) for m in messages)
        user = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
        reply = replies.pick(user)
        tokens = tokenize(reply["reply"])[: int(body.get("max_tokens") or 10_000)]
        stream = request.app.state.engine.submit(int(prompt_chars / CHARS_PER_TOKEN), tokens)
        rid, created, model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), body.get("model", replies.model)

        if not body.get("stream"):
            parts = []
            while (tok := await stream.queue.get()) is not None:
                parts.append(tok)
            message = {"role": "assistant", "content": "".join(parts).strip()}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return JSONResponse(
                {"id": rid, "object": "chat.completion", "created": created, "model": model, "choices": [choice]}
            )

        async def events() -> AsyncIterator[bytes]:
            def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
                obj = {
                    "id": rid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [choice],
                }
                return f"data: {json.dumps(obj)}\n\n".encode()

            yield chunk({"role": "assistant", "content": ""})
            first = True
            while (tok := await stream.queue.get()) is not None:
                yield chunk({"content": tok.lstrip() if first else tok})
                first = False
            yield chunk({}, "stop")
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def record(llm_url: str, out: Path) -> None:
    """Ask the real LLM (``llm_url`` with ``/v1``) each benchmark question with the gateway's
    own system prompt, and save replies with their real token counts to ``out``."""
    import httpx

    from bench.script import BARGE_IN_LINE, SCRIPT
    from gateway.config import GatewaySettings

    s = GatewaySettings()
    items = []
    history: list[dict[str, str]] = [{"role": "assistant", "content": s.agent.greeting}]
    for user in [*SCRIPT, BARGE_IN_LINE, "Hello?"]:
        messages = [{"role": "system", "content": s.agent.system_prompt}, *history, {"role": "user", "content": user}]
        body = {
            "model": s.llm.model,
            "messages": messages,
            "max_tokens": s.llm.max_tokens,
            "temperature": s.llm.temperature,
        }
        resp = httpx.post(f"{llm_url}/chat/completions", json=body, timeout=300)
        resp.raise_for_status()
        data = resp.json()
        reply = data["choices"][0]["message"]["content"].strip()
        items.append({"user": user, "reply": reply, "usage": data.get("usage", {})})
        history += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
        sys.stdout.write(f"{user!r} → {reply!r}\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": s.llm.model, "recorded_with": llm_url, "replies": items}, indent=2) + "\n")


def main() -> int:
    """Serve the stand-in, or ``--record`` replies from a real LLM."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibration", type=Path, default=None)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--llm-url", default="http://127.0.0.1:8000/v1")
    args = parser.parse_args()
    if args.record:
        record(args.llm_url, REPLIES_PATH)
        return 0
    if args.calibration is None:
        parser.error("--calibration is required to serve")
    import uvicorn

    app = create_app(Calibration.load(args.calibration), Replies())
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
