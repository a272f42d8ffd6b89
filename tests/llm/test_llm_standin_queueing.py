"""The real CPU LLM stand-in (``python -m services.llm``, the project's GGUF) under concurrent calls.

llama-cpp-python runs one completion at a time. With its default ``interrupt_requests=True`` a
new request ended the stream in flight early (``[DONE]``, no finish reason), so of four calls
speaking at once only the last got a whole reply. Requests must queue instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import AsyncOpenAI

from gateway.upstream.llm import LLMClient
from services.llm.config import DEFAULT_MODEL_ID, LLMSettings
from tools.stack import Ports, Stack

pytestmark = pytest.mark.timeout(300)

QUESTIONS = [
    "My kitchen sink is leaking. Can someone come today?",
    "What are your opening hours?",
    "How much does it cost to replace a water heater?",
    "My toilet keeps running. What should I do?",
]


@pytest.fixture(scope="module")
def llm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (with ``/v1``) of the stand-in started as its own process on a free port."""
    if not Path(LLMSettings().model_path).is_file():
        pytest.fail(f"{LLMSettings().model_path} is missing: run `make models` (make setup does)")
    logs = tmp_path_factory.mktemp("llm-logs")
    stack = Stack(Ports.free(), reuse=False, log_dir=logs, only={"llm"})
    try:
        stack.start(timeout_s=180)
    except RuntimeError as exc:
        pytest.fail(f"LLM stand-in did not start: {exc}\n{(logs / 'llm.log').read_text()[-2000:]}")
    yield f"http://127.0.0.1:{stack.ports.llm}/v1"
    stack.stop()


async def test_concurrent_streams_queue_and_all_complete(llm_url: str) -> None:
    client = AsyncOpenAI(base_url=llm_url, api_key="not-needed", timeout=120, max_retries=0)

    async def ask(question: str) -> tuple[str | None, str]:
        stream = await client.chat.completions.create(
            model=DEFAULT_MODEL_ID,
            messages=[{"role": "user", "content": question}],
            stream=True,
            max_tokens=24,
            temperature=0.0,
        )
        finish: str | None = None
        text = ""
        async for chunk in stream:
            if chunk.choices:
                finish = chunk.choices[0].finish_reason or finish
                text += chunk.choices[0].delta.content or ""
        return finish, text

    try:
        results = await asyncio.gather(*(ask(q) for q in QUESTIONS))
    finally:
        await client.close()
    complete = [r for r in results if r[0] in ("stop", "length") and r[1].strip()]
    assert len(complete) == len(QUESTIONS), f"{len(complete)}/{len(QUESTIONS)} streams complete: {results}"


async def test_gateway_replies_survive_a_concurrent_extraction_request(llm_url: str) -> None:
    """Two replies streamed through the gateway's client while a non-streamed request (as the
    post-call extraction sends) arrives in between: neither reply raises or comes back empty."""
    llm = LLMClient(llm_url, DEFAULT_MODEL_ID, timeout_s=60, max_tokens=24)
    plain = AsyncOpenAI(base_url=llm_url, api_key="not-needed", timeout=120, max_retries=0)

    async def reply(question: str) -> str:
        return "".join([str(d) async for d in llm.stream([{"role": "user", "content": question}])])

    async def extraction_like() -> str | None:
        await asyncio.sleep(0.3)  # after the first reply has started streaming
        resp = await plain.chat.completions.create(
            model=DEFAULT_MODEL_ID,
            messages=[{"role": "user", "content": "Say OK."}],
            max_tokens=8,
            temperature=0.0,
        )
        return resp.choices[0].finish_reason

    try:
        first, second, finish = await asyncio.gather(reply(QUESTIONS[0]), reply(QUESTIONS[1]), extraction_like())
    finally:
        await llm.close()
        await plain.close()
    assert first.strip() and second.strip()
    assert finish in ("stop", "length")
