"""Streaming chat completions through the official ``openai`` client (vLLM or the CPU stand-in)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
from openai import AsyncOpenAI

from gateway.conversation.llm_tools import HermesTextParser, ToolCall, ToolCallAccumulator
from shared.errors import UpstreamError

log = logging.getLogger(__name__)

PREWARM_HEADER = "X-Switchboard-Prewarm"
"""Sent with :meth:`LLMClient.prewarm` requests, so servers and test fakes can tell them from replies."""


class LLMClient:
    """Streams reply text from an OpenAI-compatible ``/v1/chat/completions``.

    Args:
        base_url: OpenAI base URL including ``/v1``.
        model: served model id.
        api_key: bearer token (vLLM/llama.cpp accept any unless configured).
        timeout_s: request timeout, seconds.
        max_tokens: reply length cap (phone replies are short).
        temperature: sampling temperature.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "not-needed",
        timeout_s: float = 20.0,
        max_tokens: int = 80,
        temperature: float = 0.3,
    ) -> None:
        self.client = AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0)
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature

    async def prewarm(self, messages: list[dict[str, str]], tools: list[dict[str, Any]] | None = None) -> None:
        """Prefill ``messages`` (and ``tools``) on the server by asking for one token, unstreamed.

        llama.cpp (llama-cpp-python) keeps the KV cache of its last prompt and reuses its longest
        common token prefix for the next; vLLM's automatic prefix caching keeps the blocks. Either
        way the next request that starts with these messages skips their prefill. Best effort:
        a failure is logged at debug level and never raised.
        """
        try:
            await self.complete(messages, max_tokens=1, tools=tools, extra_headers={PREWARM_HEADER: "1"})
        except UpstreamError as exc:
            log.debug("LLM prewarm failed: %s", exc)

    async def stream(
        self,
        messages: list[dict[str, str]],
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
    ) -> AsyncIterator[str | ToolCall]:
        """Yield the reply as text deltas and, with ``tools``, :class:`ToolCall` s (after the text).

        Tool calls arrive either as OpenAI ``tool_calls`` deltas (vLLM's hermes parser) or as
        Hermes ``<tool_call>`` text (llama.cpp rendering the GGUF's template); both become
        :class:`ToolCall` s and no tool JSON is yielded as text.

        A complete stream names a finish reason in its last choice (``stop``, ``tool_calls``, or
        ``length`` when the reply hit ``max_tokens``: a capped reply, not an error). A stream that
        ends without one was cut short (a pre-empted llama.cpp request, a dropped connection), so
        the text already yielded is a fragment: it raises, and the tool calls it may have begun
        are not yielded.

        Raises:
            UpstreamError: connection failure, timeout, an error status (retryable for 5xx/429),
                an error event inside the stream, or a stream that ended without a finish
                reason (retryable).
        """
        text_parser = HermesTextParser() if tools else None
        structured = ToolCallAccumulator()
        extra: dict[str, Any] = {"tools": tools} if tools else {}
        if tools and tool_choice is not None:
            extra["tool_choice"] = tool_choice
        finish_reason: str | None = None
        try:
            stream = await self.client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                stream=True,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                **extra,
            )
            async for chunk in stream:  # type: ignore[union-attr]
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                finish_reason = choice.finish_reason or finish_reason
                delta = choice.delta
                for tc in delta.tool_calls or []:
                    fn = tc.function
                    structured.add(tc.index, fn.name if fn else None, fn.arguments if fn else None)
                if not delta.content:
                    continue
                if text_parser is None:
                    yield delta.content
                    continue
                text, calls = text_parser.push(delta.content)
                if text:
                    yield text
                for call in calls:
                    yield call
            if finish_reason is None:
                raise UpstreamError("llm", "stream ended without a finish reason", retryable=True)
            if text_parser is not None:
                text, calls = text_parser.finish()
                if text:
                    yield text
                for call in calls:
                    yield call
            for call in structured.calls():
                yield call
        except openai.APITimeoutError as exc:
            raise UpstreamError("llm", "timed out", retryable=True) from exc
        except openai.APIConnectionError as exc:
            raise UpstreamError("llm", f"unreachable: {exc}", retryable=True) from exc
        except openai.APIStatusError as exc:
            raise UpstreamError.from_status("llm", exc.status_code, str(exc.message)) from exc
        except openai.APIError as exc:  # an {"error": …} event inside the stream
            raise UpstreamError("llm", f"stream error: {exc.message}", retryable=True) from exc
        except httpx.TimeoutException as exc:  # no byte (token or ping) within the read timeout
            raise UpstreamError("llm", "timed out while streaming", retryable=True) from exc
        except httpx.TransportError as exc:  # the connection broke while reading the stream
            raise UpstreamError("llm", f"stream broken: {exc!r}", retryable=True) from exc

    async def complete(
        self,
        messages: list[dict[str, str]],
        *,
        response_format: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        timeout_s: float | None = None,
        retries: int = 0,
        tools: list[dict[str, Any]] | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> tuple[str, str | None]:
        """One non-streamed completion (post-call extraction): the answer's text and its finish reason.

        Shares this client's connection pool; ``timeout_s`` and ``retries`` apply to this request only.

        Args:
            messages: the chat, OpenAI-shaped (``role``, ``content``).
            response_format: constrained output (``{"type": "json_object", "schema": …}`` for
                llama.cpp, ``{"type": "json_schema", …}`` for vLLM/OpenAI), or ``None``.
            max_tokens: answer length cap, tokens (default: the client's).
            temperature: sampling temperature.
            timeout_s: request timeout, seconds (default: the client's).
            retries: extra tries the ``openai`` client makes on a connection error, 408/429/5xx.
            tools: OpenAI tool definitions sent with the request (they are part of the prompt).
            extra_headers: HTTP headers added to this request.

        Returns:
            ``(text, finish_reason)``: ``""`` for no content; finish reason ``None`` when the server
            gave none (an answer cut short upstream).

        Raises:
            UpstreamError: connection failure, timeout or an error status (retryable for 5xx/429).
        """
        client = self.client.with_options(max_retries=retries)
        if timeout_s is not None:
            client = client.with_options(timeout=timeout_s)
        extra: dict[str, Any] = {"response_format": response_format} if response_format is not None else {}
        if tools:
            extra["tools"] = tools
        if extra_headers:
            extra["extra_headers"] = extra_headers
        try:
            resp = await client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=self.max_tokens if max_tokens is None else max_tokens,
                temperature=temperature,
                **extra,
            )
        except openai.APITimeoutError as exc:
            raise UpstreamError("llm", "timed out", retryable=True) from exc
        except openai.APIConnectionError as exc:
            raise UpstreamError("llm", f"unreachable: {exc}", retryable=True) from exc
        except openai.APIStatusError as exc:
            raise UpstreamError.from_status("llm", exc.status_code, str(exc.message)) from exc
        except openai.APIError as exc:
            raise UpstreamError("llm", f"error: {exc.message}", retryable=True) from exc
        if not resp.choices:
            return "", None
        choice = resp.choices[0]
        return choice.message.content or "", choice.finish_reason

    async def close(self) -> None:
        """Close the underlying HTTP client."""
        await self.client.close()
