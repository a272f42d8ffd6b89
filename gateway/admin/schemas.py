"""Request and response bodies of the admin API (pydantic; invalid input answers 422)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from gateway.conversation.corrections import validate_regex_rule

E164 = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+[1-9]\d{1,14}$")]
"""A phone number in E.164: ``+`` and up to 15 digits (``+15550100002``)."""
Voice = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z]{2}_[a-z0-9]+$", max_length=64)]
"""A Kokoro voice name (``af_heart``, ``am_michael``, ``bf_emma``…)."""
Language = Literal["en", "es", "auto"]
"""What the agent speaks: English, Spanish, or ``auto`` (the caller's first utterance decides)."""
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
Event = Literal["call.started", "call.completed"]
ALL_EVENTS: tuple[Event, ...] = ("call.started", "call.completed")

_FACT_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_ ]{0,63}$")


def _check_facts(facts: dict[str, str] | None) -> dict[str, str] | None:
    if facts is None:
        return None
    if len(facts) > 50:
        raise ValueError("at most 50 facts")
    for key, value in facts.items():
        if not _FACT_KEY.match(key):
            raise ValueError(f"fact name {key!r}: letters, digits, spaces and _ only (≤ 64)")
        if len(value) > 2000:
            raise ValueError(f"fact {key!r} is longer than 2000 characters")
    return facts


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentIn(_In):
    """A new agent."""

    name: Name
    greeting: str = Field(..., min_length=1, max_length=2000)
    system_prompt: str = Field(..., min_length=1, max_length=20000, description="``{facts}`` marks where facts go")
    voice: Voice = "af_heart"
    language: Language = "en"
    facts: dict[str, str] = Field(default_factory=dict, description="hours, service_area, prices, … → text")
    transfer_number: E164 | None = None
    webhook_url: AnyHttpUrl | None = None
    webhook_secret: str | None = Field(None, min_length=8, max_length=256)
    webhook_events: list[Event] = Field(default_factory=lambda: list(ALL_EVENTS))
    is_default: bool = False

    _facts = field_validator("facts")(_check_facts)


class AgentPatch(_In):
    """Fields to change (absent fields stay; ``null`` clears the optional ones)."""

    name: Name | None = None
    greeting: str | None = Field(None, min_length=1, max_length=2000)
    system_prompt: str | None = Field(None, min_length=1, max_length=20000)
    voice: Voice | None = None
    language: Language | None = None
    facts: dict[str, str] | None = None
    transfer_number: E164 | None = None
    webhook_url: AnyHttpUrl | None = None
    webhook_secret: str | None = Field(None, min_length=8, max_length=256)
    webhook_events: list[Event] | None = None
    is_default: bool | None = None

    _facts = field_validator("facts")(_check_facts)

    @model_validator(mode="after")
    def _required_not_null(self) -> AgentPatch:
        for name in ("name", "greeting", "system_prompt", "voice", "language", "facts", "webhook_events", "is_default"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class AgentOut(BaseModel):
    """An agent as the API shows it (the webhook secret is never returned)."""

    id: int
    name: str
    greeting: str
    system_prompt: str
    voice: str
    language: str
    facts: dict[str, Any]
    transfer_number: str | None
    webhook_url: str | None
    webhook_secret_set: bool
    webhook_events: list[str]
    is_default: bool
    numbers: list[str]
    created_at: datetime
    updated_at: datetime


class NumberIn(_In):
    """Map a number to an agent."""

    number: E164
    agent_id: int
    label: str | None = Field(None, max_length=120)


class NumberPatch(_In):
    """Fields to change."""

    number: E164 | None = None
    agent_id: int | None = None
    label: str | None = Field(None, max_length=120)


class NumberOut(BaseModel):
    """A mapped number."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    number: str
    agent_id: int
    label: str | None
    created_at: datetime


class CorrectionIn(_In):
    """A keyword correction: global without ``agent_id``; ``is_regex`` patterns must compile and be fast
    (no catastrophic backtracking, see :func:`~gateway.conversation.corrections.validate_regex_rule`)."""

    pattern: str = Field(..., min_length=1, max_length=500)
    replacement: str = Field(..., max_length=500)
    is_regex: bool = False
    agent_id: int | None = None

    @model_validator(mode="after")
    def _valid_rule(self) -> CorrectionIn:
        if not self.pattern.strip():
            raise ValueError("pattern is blank")
        if self.is_regex:
            validate_regex_rule(self.pattern, self.replacement)  # compiles, valid groups, not slow
        return self


class CorrectionPatch(_In):
    """Fields to change."""

    pattern: str | None = Field(None, min_length=1, max_length=500)
    replacement: str | None = Field(None, max_length=500)
    is_regex: bool | None = None
    agent_id: int | None = None


class CorrectionOut(BaseModel):
    """A correction rule."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    agent_id: int | None
    pattern: str
    replacement: str
    is_regex: bool
    created_at: datetime


class CorrectionTest(_In):
    """Text to run through an agent's (or the global) corrections."""

    text: str = Field(..., max_length=5000)
    agent_id: int | None = None


class TurnOut(BaseModel):
    """One turn of a call."""

    model_config = ConfigDict(from_attributes=True)

    seq: int
    role: str
    text: str
    raw_text: str | None
    started_at: datetime | None
    ended_at: datetime | None
    data: dict[str, Any]


class ExtractionOut(BaseModel):
    """The post-call extraction."""

    model_config = ConfigDict(from_attributes=True)

    status: str
    data: dict[str, Any] | None
    attempts: int
    error: str | None
    model: str | None
    duration_ms: float | None
    created_at: datetime


class DeliveryOut(BaseModel):
    """One delivery attempt."""

    model_config = ConfigDict(from_attributes=True)

    attempt: int
    started_at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None
    success: bool


class WebhookEventOut(BaseModel):
    """An outbox event with its attempts."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    event_id: str
    event_type: str
    url: str
    status: str
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    deliveries: list[DeliveryOut]


class CallOut(BaseModel):
    """A call in a list."""

    model_config = ConfigDict(from_attributes=True)

    call_sid: str
    from_number: str
    to_number: str
    agent_id: int | None
    agent_name: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    duration_s: float | None
    has_recording: bool
    extraction_status: str


class CallDetail(CallOut):
    """A call with its transcript, extraction and webhook deliveries."""

    turns: list[TurnOut]
    extraction: ExtractionOut | None
    webhooks: list[WebhookEventOut]


class CallPage(BaseModel):
    """A page of calls, newest first."""

    items: list[CallOut]
    total: int
    limit: int
    offset: int
