"""A scripted chat model: replies as text deltas in loop time, tool calls, outages."""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.conversation.llm_tools import ToolCall
from shared.errors import UpstreamError

DEFAULT_REPLY = "Okay. How can I help?"


@dataclass(frozen=True)
class LLMReply:
    """One scripted answer.

    Attributes:
        text: streamed a word (with its trailing space) per delta.
        tool_calls: yielded after the text, as the gateway's LLM client yields them.
        error: an HTTP status: the request fails with :class:`UpstreamError` (service ``llm``)
            after ``fail_after_tokens`` deltas.
        ttft_s, token_delay_s: override :class:`FakeLLM`'s timings for this reply.
    """

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    error: int | None = None
    fail_after_tokens: int = 0
    ttft_s: float | None = None
    token_delay_s: float | None = None


@dataclass(frozen=True)
class LLMRequest:
    """One request as it was sent: loop time, a deep copy of the messages, the tools offered."""

    at: float
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None

    @property
    def user_text(self) -> str:
        """The last message's content (the caller's turn being answered)."""
        return str(self.messages[-1]["content"])

    def assistant_texts(self) -> list[str]:
        """The agent's messages in the history sent, in order."""
        return [str(m["content"]) for m in self.messages if m["role"] == "assistant"]


@dataclass
class FakeLLM:
    """Satisfies :class:`~gateway.conversation.deps.ChatModel`: answers from a script, in order.

    Args:
        replies: a ``str`` (text only) or :class:`LLMReply` per request; when they run out,
            ``default`` is answered.
        ttft_s: time to the first delta; token_delay_s: between deltas (loop time).

    Attributes:
        requests: every request, in order. cancelled: replies whose stream was closed before its end.
        prewarms: every :meth:`prewarm` (they take no scripted reply).
    """

    replies: Iterable[str | LLMReply] = ()
    default: str = DEFAULT_REPLY
    ttft_s: float = 0.2
    token_delay_s: float = 0.02
    requests: list[LLMRequest] = field(default_factory=list)
    cancelled: int = 0
    prewarms: list[LLMRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._script = [r if isinstance(r, LLMReply) else LLMReply(r) for r in self.replies]

    def stream(
        self, messages: Sequence[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> AsyncIterator[str | ToolCall]:
        """Text deltas, then the reply's tool calls.

        Raises:
            UpstreamError: the scripted reply is an outage (``retryable`` for 5xx and 429).
        """
        self.requests.append(
            LLMRequest(asyncio.get_running_loop().time(), copy.deepcopy(list(messages)), copy.deepcopy(tools))
        )
        reply = self._script.pop(0) if self._script else LLMReply(self.default)
        return self._deltas(reply)

    async def prewarm(self, messages: Sequence[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> None:
        """Record the prefill request; it costs ``ttft_s`` and never fails."""
        self.prewarms.append(
            LLMRequest(asyncio.get_running_loop().time(), copy.deepcopy(list(messages)), copy.deepcopy(tools))
        )
        await asyncio.sleep(self.ttft_s)

    async def _deltas(self, reply: LLMReply) -> AsyncIterator[str | ToolCall]:
        tokens = re.findall(r"\S+\s*", reply.text)
        delay = self.token_delay_s if reply.token_delay_s is None else reply.token_delay_s
        finished = False
        try:
            await asyncio.sleep(self.ttft_s if reply.ttft_s is None else reply.ttft_s)
            for i, token in enumerate(tokens):
                if reply.error is not None and i >= reply.fail_after_tokens:
                    break
                if i:
                    await asyncio.sleep(delay)
                yield token
            if reply.error is not None:
                status = reply.error
                raise UpstreamError("llm", f"scripted outage (HTTP {status})", status >= 500 or status == 429, status)
            for call in reply.tool_calls:
                yield call
            finished = True
        finally:
            if not finished and reply.error is None:
                self.cancelled += 1
