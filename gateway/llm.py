"""Streaming chat completions through the official ``openai`` client (vLLM or the CPU stand-in)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
from openai import AsyncOpenAI

from gateway.tools import HermesTextParser, ToolCall, ToolCallAccumulator
from shared.errors import UpstreamError


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

        Raises:
            UpstreamError: connection failure, timeout or an error status (retryable for 5xx/429).
        """
        text_parser = HermesTextParser() if tools else None
        structured = ToolCallAccumulator()
        extra: dict[str, Any] = {"tools": tools} if tools else {}
        if tools and tool_choice is not None:
            extra["tool_choice"] = tool_choice
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
                delta = chunk.choices[0].delta
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

    async def close(self) -> None:
        """Close the underlying HTTP client."""
        await self.client.close()
