"""The gateway's LLM clients against a scripted OpenAI server: a stream cut short is an error.

llama-cpp-python's server, when a new request pre-empts the stream in flight, ends that stream
with ``data: [DONE]`` after a chunk without a finish reason; a dropped connection ends it with
no ``[DONE]`` at all. Both must reach the gateway as :class:`UpstreamError`, not as a short reply.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from gateway.after_call.extraction import Extractor
from gateway.conversation.llm_tools import ToolCall
from gateway.upstream.llm import LLMClient
from shared.errors import UpstreamError
from tests.component.fakes import ServerThread

pytestmark = pytest.mark.timeout(60)


def chunk(content: str | None = None, finish: str | None = None) -> str:
    """One SSE event holding a chat.completion.chunk."""
    delta = {"content": content} if content is not None else {}
    data = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(data)}\n\n"


DONE = "data: [DONE]\n\n"
USAGE = 'data: {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [], '
USAGE += '"usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}\n\n'


class ScriptedLLM:
    """``/v1/chat/completions`` answering each request with the next scripted answer.

    A streamed answer is a list of raw SSE event strings; a non-streamed one is a
    ``(content, finish_reason)`` pair.
    """

    def __init__(self) -> None:
        self.answers: list[Any] = []
        self.requests: list[dict[str, Any]] = []
        self.app = FastAPI()
        self.app.post("/v1/chat/completions", response_model=None)(self._chat)

    async def _chat(self, request: Request) -> StreamingResponse | JSONResponse:
        body = await request.json()
        self.requests.append(body)
        answer = self.answers.pop(0)
        if body.get("stream"):

            async def events() -> Any:
                for event in answer:
                    yield event

            return StreamingResponse(events(), media_type="text/event-stream")
        content, finish = answer
        choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}
        return JSONResponse(
            {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"], "choices": [choice]}
        )


@pytest.fixture(scope="module")
def llm() -> Iterator[tuple[ScriptedLLM, str]]:
    fake = ScriptedLLM()
    with ServerThread(fake.app) as server:
        yield fake, f"{server.url}/v1"


@pytest.fixture
def scripted(llm: tuple[ScriptedLLM, str]) -> tuple[ScriptedLLM, str]:
    fake, url = llm
    fake.answers.clear()
    fake.requests.clear()
    return fake, url


async def collect(url: str, events: list[str], fake: ScriptedLLM) -> list[str | ToolCall]:
    """Stream one scripted answer through :class:`LLMClient`; everything it yielded."""
    fake.answers.append(events)
    client = LLMClient(url, "m", timeout_s=10)
    try:
        return [item async for item in client.stream([{"role": "user", "content": "Hi"}])]
    finally:
        await client.close()


async def test_complete_stream_yields_the_reply(scripted: tuple[ScriptedLLM, str]) -> None:
    fake, url = scripted
    items = await collect(url, [chunk("Sure,"), chunk(" I can help."), chunk(finish="stop"), USAGE, DONE], fake)
    assert "".join(str(i) for i in items) == "Sure, I can help."


async def test_length_capped_stream_is_a_reply_not_an_error(scripted: tuple[ScriptedLLM, str]) -> None:
    fake, url = scripted
    items = await collect(url, [chunk("Sure, I can"), chunk(" help", finish="length"), DONE], fake)
    assert "".join(str(i) for i in items) == "Sure, I can help"


@pytest.mark.parametrize(
    "events",
    [
        pytest.param([chunk("Sure, I can"), chunk(" help you"), DONE], id="done-without-finish-reason"),
        pytest.param([chunk("Sure, I can"), chunk(" help you")], id="eof-without-done"),
        pytest.param([DONE], id="empty-stream"),
    ],
)
async def test_stream_without_finish_reason_is_a_retryable_error(
    scripted: tuple[ScriptedLLM, str], events: list[str]
) -> None:
    fake, url = scripted
    with pytest.raises(UpstreamError, match="without a finish reason") as info:
        await collect(url, events, fake)
    assert info.value.service == "llm" and info.value.retryable


async def test_cut_stream_yields_no_half_tool_call(scripted: tuple[ScriptedLLM, str]) -> None:
    fake, url = scripted
    fake.answers.append([chunk("Goodbye! <tool_call>"), chunk('{"name": "end_call", "arguments": {}}'), DONE])
    client = LLMClient(url, "m", timeout_s=10)
    tools = [{"type": "function", "function": {"name": "end_call", "parameters": {"type": "object"}}}]
    items: list[str | ToolCall] = []
    with pytest.raises(UpstreamError, match="without a finish reason"):
        async for item in client.stream([{"role": "user", "content": "Bye"}], tools):
            items.append(item)
    await client.close()
    assert not [i for i in items if isinstance(i, ToolCall)]


async def test_error_event_inside_the_stream_is_an_upstream_error(scripted: tuple[ScriptedLLM, str]) -> None:
    fake, url = scripted
    error = 'data: {"error": {"message": "model crashed", "type": "server_error"}}\n\n'
    with pytest.raises(UpstreamError, match="model crashed") as info:
        await collect(url, [chunk("Sure"), error], fake)
    assert info.value.retryable


VALID = json.dumps({"caller_name": "Ann", "callback_number": "", "address": "", "problem": "leak",
                    "urgency": "normal", "requested_time_window": "", "summary": "Ann has a leak."})  # fmt: skip
CALL = [{"role": "user", "text": "Hi, this is Ann, I have a leak."}, {"role": "assistant", "text": "Okay."}]


async def test_extraction_cut_at_max_tokens_is_retried_asking_for_shorter(scripted: tuple[ScriptedLLM, str]) -> None:
    fake, url = scripted
    fake.answers += [(VALID[:40], "length"), (VALID, "stop")]
    extractor = Extractor(url, "m", max_tokens=16)
    result = await extractor.extract(CALL)
    await extractor.close()
    assert result.ok and result.attempts == 2
    retry = fake.requests[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": VALID[:40]}
    assert "cut off" in retry[-1]["content"]


async def test_extraction_without_finish_reason_is_asked_again_unchanged(scripted: tuple[ScriptedLLM, str]) -> None:
    fake, url = scripted
    fake.answers += [(VALID[:40], None), (VALID[:40], None)]
    extractor = Extractor(url, "m")
    result = await extractor.extract(CALL)
    await extractor.close()
    assert not result.ok and result.attempts == 2
    assert result.error is not None and "without a finish reason" in result.error
    assert fake.requests[1]["messages"] == fake.requests[0]["messages"]


async def test_extraction_valid_answer_is_used_whatever_the_finish_reason(scripted: tuple[ScriptedLLM, str]) -> None:
    fake, url = scripted
    fake.answers.append((VALID, None))
    extractor = Extractor(url, "m")
    result = await extractor.extract(CALL)
    await extractor.close()
    assert result.ok and result.attempts == 1
    assert result.details is not None and result.details.caller_name == "Ann"


async def test_prewarm_asks_for_one_unstreamed_token_of_the_same_prompt(scripted: tuple[ScriptedLLM, str]) -> None:
    fake, url = scripted
    fake.answers.append(("O", "length"))
    tools = [{"type": "function", "function": {"name": "end_call", "parameters": {"type": "object"}}}]
    messages = [{"role": "system", "content": "You answer the phone."}, {"role": "user", "content": ""}]
    client = LLMClient(url, "m", timeout_s=10)
    try:
        await client.prewarm(messages, tools)
    finally:
        await client.close()
    (body,) = fake.requests
    assert body["max_tokens"] == 1 and not body.get("stream")
    assert body["messages"] == messages and body["tools"] == tools


async def test_a_failed_prewarm_is_swallowed(scripted: tuple[ScriptedLLM, str]) -> None:
    fake, url = scripted  # no answer scripted: the server fails the request with a 500
    client = LLMClient(url, "m", timeout_s=10)
    try:
        await client.prewarm([{"role": "user", "content": ""}])
    finally:
        await client.close()
    assert len(fake.requests) == 1
