"""Function calling: the tools the agent may use, and parsing tool calls out of an LLM stream.

Two wire forms reach the gateway:

* vLLM with ``--tool-call-parser hermes`` returns OpenAI ``tool_calls`` deltas (name and
  JSON-argument fragments per index) — assembled by :class:`ToolCallAccumulator`.
* A server that only renders the model's chat template (llama.cpp with Qwen's GGUF template)
  returns the Hermes format as text: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
  (https://github.com/NousResearch/Hermes-Function-Calling) — split out of the text stream by
  :class:`HermesTextParser`, so tool JSON is never spoken.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

TOOL_SPECS: dict[str, dict[str, Any]] = {
    "end_call": {
        "description": "Hang up after saying goodbye, when the caller is done or says goodbye.",
        "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}},
    },
    "transfer_call": {
        "description": "Transfer the caller to a human at the business when they ask for a person.",
        "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}},
    },
    "take_message": {
        "description": "Take a message for the business.",
        "parameters": {
            "type": "object",
            "properties": {
                "caller_name": {"type": "string"},
                "callback_number": {"type": "string"},
                "message": {"type": "string"},
            },
            "required": ["message"],
        },
    },
    "book_appointment": {
        "description": "Book a plumber visit once the caller's name, address and a time window are known.",
        "parameters": {
            "type": "object",
            "properties": {
                "caller_name": {"type": "string"},
                "address": {"type": "string"},
                "problem": {"type": "string"},
                "time_window": {"type": "string"},
            },
            "required": ["caller_name", "address"],
        },
    },
}


def openai_tools(names: list[str]) -> list[dict[str, Any]]:
    """The ``tools`` request field (OpenAI function-calling schema) for the enabled tool names."""
    return [{"type": "function", "function": {"name": n, **TOOL_SPECS[n]}} for n in names if n in TOOL_SPECS]


@dataclass(frozen=True)
class ToolCall:
    """One function call requested by the model."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


def parse_call(payload: str) -> ToolCall | None:
    """Parse ``{"name": ..., "arguments": {...} | "<json>"}``; ``None`` if it is not one."""
    try:
        data = json.loads(payload)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    args = data.get("arguments", data.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return None
    return ToolCall(data["name"], args if isinstance(args, dict) else {})


class HermesTextParser:
    """Separates spoken text from ``<tool_call>…</tool_call>`` blocks in a text stream.

    :meth:`push` returns (text to speak, completed tool calls). A reply that is nothing but a
    bare JSON object (some small models drop the tags) is held back and parsed at :meth:`finish`.
    """

    OPEN, CLOSE = "<tool_call>", "</tool_call>"

    def __init__(self) -> None:
        self._buf = ""
        self._in_call = False
        self._bare_json: bool | None = None

    def push(self, delta: str) -> tuple[str, list[ToolCall]]:
        """Feed a delta; returns (speakable text, tool calls completed by it)."""
        self._buf += delta
        if self._bare_json is None:
            stripped = self._buf.lstrip()
            if not stripped:
                return "", []
            self._bare_json = stripped.startswith("{")
        if self._bare_json:
            return "", []
        text = ""
        calls: list[ToolCall] = []
        while True:
            if self._in_call:
                end = self._buf.find(self.CLOSE)
                if end < 0:
                    return text, calls
                call = parse_call(self._buf[:end].strip())
                if call is not None:
                    calls.append(call)
                self._buf = self._buf[end + len(self.CLOSE) :]
                self._in_call = False
                continue
            start = self._buf.find(self.OPEN)
            if start >= 0:
                text += self._buf[:start]
                self._buf = self._buf[start + len(self.OPEN) :]
                self._in_call = True
                continue
            # Keep a possible partial "<tool_call>" at the end of the buffer for the next delta.
            keep = next((k for k in range(len(self.OPEN) - 1, 0, -1) if self._buf.endswith(self.OPEN[:k])), 0)
            text += self._buf[: len(self._buf) - keep]
            self._buf = self._buf[len(self._buf) - keep :]
            return text, calls

    def finish(self) -> tuple[str, list[ToolCall]]:
        """End of stream: flush text, parse a bare-JSON reply."""
        rest, self._buf = self._buf, ""
        if self._bare_json:
            call = parse_call(rest.strip())
            return ("", [call]) if call is not None else (rest, [])
        return ("" if self._in_call else rest), []


class ToolCallAccumulator:
    """Assembles OpenAI streaming ``tool_calls`` deltas (by index) into :class:`ToolCall` s."""

    def __init__(self) -> None:
        self._parts: dict[int, dict[str, str]] = {}

    def add(self, index: int, name: str | None, arguments: str | None) -> None:
        """Add one delta fragment."""
        part = self._parts.setdefault(index, {"name": "", "arguments": ""})
        part["name"] += name or ""
        part["arguments"] += arguments or ""

    def calls(self) -> list[ToolCall]:
        """The completed calls, in index order (malformed argument JSON is logged and dropped)."""
        out = []
        for _, part in sorted(self._parts.items()):
            call = parse_call(json.dumps({"name": part["name"], "arguments": part["arguments"]}))
            if call is None:
                log.warning("dropped a tool call with malformed arguments: %r", part)
            else:
                out.append(call)
        return out
