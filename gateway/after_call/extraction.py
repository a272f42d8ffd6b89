"""Post-call extraction: the LLM fills a JSON schema from the call's transcript, validated by pydantic.

The schema is sent as constrained output (llama.cpp: ``response_format={"type": "json_object",
"schema": …}`` compiles it to a grammar; vLLM: OpenAI's ``json_schema``), the answer is validated
with :class:`CallDetails`, and an invalid answer is retried once with the validation error. The
request goes through the gateway's one LLM client (:meth:`gateway.upstream.llm.LLMClient.complete`).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.upstream.llm import LLMClient
from shared.errors import UpstreamError

log = logging.getLogger(__name__)

Urgency = Literal["low", "normal", "emergency"]


class CallDetails(BaseModel):
    """What a receptionist writes down after a call. Unknown fields are ``None``."""

    model_config = ConfigDict(extra="ignore")

    caller_name: str | None = Field(None, max_length=200)
    callback_number: str | None = Field(None, max_length=40)
    address: str | None = Field(None, max_length=500)
    problem: str | None = Field(None, max_length=1000)
    urgency: Urgency = "normal"
    requested_time_window: str | None = Field(None, max_length=200)
    summary: str = Field(..., min_length=1, max_length=2000)

    @field_validator("caller_name", "callback_number", "address", "problem", "requested_time_window", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in {"", "unknown", "none", "null", "n/a", "not provided"}:
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("urgency", mode="before")
    @classmethod
    def _urgency_lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def ground(details: CallDetails, caller_text: str, caller_id: str = "") -> CallDetails:
    """Drop details the caller never said (small models fill blanks with the agent's words or the form's).

    ``caller_name``, ``address`` and ``requested_time_window`` keep a value only if one of its words
    (3+ letters, or a number) is in ``caller_text``; ``callback_number`` only if its last 7 digits are
    among the digits the caller said, or it is the caller ID.
    """
    heard = _words(caller_text)
    updates: dict[str, Any] = {}
    for name in ("caller_name", "address", "requested_time_window"):
        value = getattr(details, name)
        if value is not None:
            significant = {w for w in _words(value) if len(w) >= 3 or w.isdigit()}
            if not significant & heard:
                updates[name] = None
    if details.callback_number is not None:
        digits = re.sub(r"\D", "", details.callback_number)
        said = re.sub(r"\D", "", caller_text)
        caller_digits = re.sub(r"\D", "", caller_id)
        if not digits or not (digits[-7:] in said or (caller_digits and digits[-10:] == caller_digits[-10:])):
            updates["callback_number"] = None
    return details.model_copy(update=updates) if updates else details


_TEXT = {"type": "string"}
EXTRACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "caller_name": _TEXT,
        "callback_number": _TEXT,
        "address": _TEXT,
        "problem": _TEXT,
        "urgency": {"type": "string", "enum": ["low", "normal", "emergency"]},
        "requested_time_window": _TEXT,
        "summary": _TEXT,
    },
    "required": [
        "caller_name",
        "callback_number",
        "address",
        "problem",
        "urgency",
        "requested_time_window",
        "summary",
    ],
    "additionalProperties": False,
}
"""The JSON schema given to the LLM (strings only, empty when unknown: small models follow it best)."""

SYSTEM_PROMPT = (
    "You read the transcript of a phone call between a business's receptionist (Agent) and a Caller, "
    "and fill in a JSON form.\n"
    "Fields: caller_name (the name the caller said), callback_number (the phone number the caller said; "
    "if they said none, the caller ID), address (where the job is), problem (what is wrong, a few words), "
    "urgency (emergency: flooding, burst pipe, gas, no heat or water, danger; low: only a question or a quote; "
    "otherwise normal), requested_time_window (when the caller wants someone to come), summary (one sentence).\n"
    "Use only what the Caller said. Write an empty string for anything the caller did not say. "
    "Write the values in the language the Caller spoke (a Spanish call gets Spanish values)."
)


def format_transcript(turns: Sequence[dict[str, Any]]) -> str:
    """``Caller: …`` / ``Agent: …`` lines from turns (dicts with ``role`` user|assistant and ``text``)."""
    lines = []
    for turn in turns:
        text = str(turn.get("text") or "").strip()
        if text:
            lines.append(f"{'Caller' if turn.get('role') == 'user' else 'Agent'}: {text}")
    return "\n".join(lines)


@dataclass
class ExtractionResult:
    """Outcome of one extraction.

    Attributes:
        details: the validated details, or ``None`` when both attempts failed.
        raw: the LLM's last answer (text).
        attempts: LLM requests made (1 or 2).
        error: why it failed (validation or upstream error), else ``None``.
    """

    details: CallDetails | None
    raw: str | None
    attempts: int
    error: str | None
    model: str
    duration_ms: float

    @property
    def ok(self) -> bool:
        """True when ``details`` is set."""
        return self.details is not None


class Extractor:
    """Runs extractions against an OpenAI-compatible chat completions endpoint.

    Args:
        base_url: OpenAI base URL including ``/v1``.
        model: served model id.
        api_key: bearer token.
        timeout_s: per request, seconds.
        max_tokens: answer length cap, tokens.
        json_mode: ``json_object`` (llama.cpp: schema inside ``response_format``) or ``json_schema`` (OpenAI/vLLM).

    :meth:`sharing` builds one on the app's :class:`~gateway.upstream.llm.LLMClient` instead (its
    connection pool, not a second one).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "not-needed",
        timeout_s: float = 60.0,
        max_tokens: int = 400,
        json_mode: str = "json_object",
    ) -> None:
        self.llm = LLMClient(base_url, model, api_key, timeout_s=timeout_s, max_tokens=max_tokens)
        self._owns_llm = True
        self.model = model
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.json_mode = json_mode

    @classmethod
    def sharing(
        cls, llm: LLMClient, timeout_s: float = 60.0, max_tokens: int = 400, json_mode: str = "json_object"
    ) -> Extractor:
        """An extractor asking ``llm``'s server and model through ``llm`` (which :meth:`close` leaves open)."""
        extractor = cls.__new__(cls)  # not __init__: that one builds its own client
        extractor.llm, extractor._owns_llm, extractor.model = llm, False, llm.model
        extractor.timeout_s, extractor.max_tokens, extractor.json_mode = timeout_s, max_tokens, json_mode
        return extractor

    def _response_format(self) -> dict[str, Any]:
        if self.json_mode == "json_schema":
            return {
                "type": "json_schema",
                "json_schema": {"name": "call_details", "schema": EXTRACTION_SCHEMA, "strict": True},
            }
        return {"type": "json_object", "schema": EXTRACTION_SCHEMA}

    async def _ask(self, messages: list[dict[str, str]]) -> tuple[str, str | None]:
        """One request (retried once on a connection error or 5xx): the answer's text and its finish
        reason (``None`` if the server gave none).

        Raises:
            UpstreamError: the request failed.
        """
        return await self.llm.complete(
            messages,
            response_format=self._response_format(),
            max_tokens=self.max_tokens,
            temperature=0.0,
            timeout_s=self.timeout_s,
            retries=1,
        )

    async def extract(self, turns: Sequence[dict[str, Any]], caller_id: str = "") -> ExtractionResult:
        """Extract :class:`CallDetails` from a call's turns; never raises (errors are in the result).

        One retry: an answer that is not valid JSON or fails validation is sent back with the error;
        one that stopped at ``max_tokens`` (finish reason ``length``, the JSON cut off) is sent back
        with a request for shorter values. An invalid answer without a finish reason was cut short
        upstream and is asked for again unchanged, like a failed request. A valid answer is used
        whatever its finish reason (a cut-off JSON object never parses).
        """
        t0 = time.monotonic()
        transcript = format_transcript(turns)
        caller_text = " ".join(str(t.get("text") or "") for t in turns if t.get("role") == "user")
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Caller ID: {caller_id or 'unknown'}\n\nTranscript:\n{transcript}"},
        ]
        raw: str | None = None
        error: str | None = None
        attempts = 0
        for _ in range(2):
            attempts += 1
            try:
                raw, finish_reason = await self._ask(messages)
            except UpstreamError as exc:
                error = f"LLM request failed: {type(exc).__name__}: {exc}"
                log.warning("extraction: %s", error)
                continue
            try:
                details = ground(CallDetails.model_validate(json.loads(raw)), caller_text, caller_id)
            except (json.JSONDecodeError, ValidationError) as exc:
                if finish_reason is None:  # cut short upstream, not the model's fault: ask again as is
                    error = f"answer ended without a finish reason: {exc}"[:2000]
                    log.warning("extraction attempt %d: %s", attempts, error.splitlines()[0])
                    continue
                if finish_reason == "length":
                    error = f"answer cut off at max_tokens={self.max_tokens}: {exc}"[:2000]
                    feedback = "That answer was too long and was cut off. Answer again with the JSON object only, "
                    feedback += "keeping every value short."
                else:
                    error = f"invalid answer: {exc}"[:2000]
                    feedback = f"That answer was invalid ({error[:500]}). Answer again with the JSON object only."
                log.warning("extraction attempt %d invalid: %s", attempts, error.splitlines()[0])
                messages += [{"role": "assistant", "content": raw}, {"role": "user", "content": feedback}]
                continue
            return ExtractionResult(details, raw, attempts, None, self.model, (time.monotonic() - t0) * 1000)
        return ExtractionResult(None, raw, attempts, error, self.model, (time.monotonic() - t0) * 1000)

    async def close(self) -> None:
        """Close the LLM client if this extractor made it (not one given to :meth:`sharing`)."""
        if self._owns_llm:
            await self.llm.close()
