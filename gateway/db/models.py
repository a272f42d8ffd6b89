"""ORM models: the only module that names tables and columns (repositories use these classes).

Tables:
    ``agents``              a business's phone agent: greeting, prompt, voice, facts, transfer, webhook
    ``phone_numbers``       E.164 numbers, each mapped to one agent
    ``corrections``         keyword corrections, per agent (``agent_id``) or global (``agent_id`` NULL)
    ``calls``               one row per call (sid, from, to, agent, times, status, recording, extraction state)
    ``turns``               the call's turns in order (role, text, times, the full turn as JSON)
    ``extractions``         the post-call extraction of a call (validated JSON, raw LLM text, attempts)
    ``webhook_outbox``      durable webhook events (body, signature secret, state, retry schedule, lease)
    ``webhook_deliveries``  one row per delivery attempt of an outbox event

Timestamps are timezone-aware UTC :class:`datetime` values (stored naive-UTC on SQLite).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import DateTime, TypeDecorator


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


def from_unix(ts: float | None) -> datetime | None:
    """Unix seconds → aware UTC datetime (``None`` stays ``None``)."""
    return None if ts is None else datetime.fromtimestamp(float(ts), UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A ``DateTime`` that always comes back timezone-aware UTC, on SQLite and PostgreSQL alike.

    Raises:
        ValueError: on binding a naive datetime (ambiguous time zone).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with constraint naming (stable names for Alembic on SQLite and PostgreSQL)."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[str]: JSON()}


DEFAULT_EVENTS = ["call.started", "call.completed"]


class Agent(Base):
    """A business's phone agent."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    greeting: Mapped[str] = mapped_column(Text)
    system_prompt: Mapped[str] = mapped_column(Text)
    voice: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8), default="en", server_default="en")
    """``en``, ``es`` or ``auto`` (detected on the caller's first utterance): :mod:`gateway.conversation.language`."""
    facts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Business facts (hours, service_area, prices, …): name → text, given to the LLM with the prompt."""
    transfer_number: Mapped[str | None] = mapped_column(String(16))
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    webhook_secret: Mapped[str | None] = mapped_column(String(256))
    webhook_events: Mapped[list[str]] = mapped_column(default=lambda: list(DEFAULT_EVENTS))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    """Answers calls to unknown numbers (policy ``default``); at most one agent has it."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    numbers: Mapped[list[PhoneNumber]] = relationship(
        back_populates="agent", cascade="all, delete-orphan", passive_deletes=True, order_by="PhoneNumber.number"
    )


class PhoneNumber(Base):
    """An E.164 number answered by an agent."""

    __tablename__ = "phone_numbers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(16), unique=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    label: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    agent: Mapped[Agent] = relationship(back_populates="numbers")


class CorrectionRule(Base):
    """``pattern → replacement`` applied to transcripts; whole word, case-insensitive."""

    __tablename__ = "corrections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    """``None``: a global rule, applied to every call."""
    pattern: Mapped[str] = mapped_column(String(500))
    replacement: Mapped[str] = mapped_column(String(500))
    is_regex: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Call(Base):
    """One phone call."""

    __tablename__ = "calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(64), unique=True)
    stream_sid: Mapped[str | None] = mapped_column(String(64))
    from_number: Mapped[str] = mapped_column(String(32), default="")
    to_number: Mapped[str] = mapped_column(String(32), default="", index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"), index=True)
    agent_name: Mapped[str] = mapped_column(String(120), default="default")
    status: Mapped[str] = mapped_column(String(20), default="in-progress")
    """``in-progress``, ``completed`` or ``rejected``."""
    started_at: Mapped[datetime] = mapped_column(index=True)
    ended_at: Mapped[datetime | None] = mapped_column()
    duration_s: Mapped[float | None] = mapped_column(Float)
    recording_path: Mapped[str | None] = mapped_column(String(512))
    """Relative to the data dir, e.g. ``recordings/CA….wav``."""
    extraction_status: Mapped[str] = mapped_column(String(16), default="none", index=True)
    """``none`` (call not over), ``pending``, ``done``, ``failed``, ``skipped`` or ``disabled``."""

    turns: Mapped[list[Turn]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="Turn.seq", back_populates="call"
    )
    extraction: Mapped[Extraction | None] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, back_populates="call"
    )


class Turn(Base):
    """One turn of a call: the caller's utterance or the agent's reply."""

    __tablename__ = "turns"
    __table_args__ = (UniqueConstraint("call_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text, default="")
    raw_text: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """The turn exactly as the session stored it (latencies, interruption, …)."""

    call: Mapped[Call] = relationship(back_populates="turns")


class Extraction(Base):
    """The post-call extraction of a call."""

    __tablename__ = "extractions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    """``ok`` (``data`` validated) or ``failed`` (see ``error``)."""
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    raw: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(120))
    duration_ms: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    call: Mapped[Call] = relationship(back_populates="extraction")


class OutboxEvent(Base):
    """A webhook event to deliver at least once."""

    __tablename__ = "webhook_outbox"
    __table_args__ = (Index("ix_webhook_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    """The idempotency key (a UUID): the same on every attempt of this event."""
    event_type: Mapped[str] = mapped_column(String(32))
    call_sid: Mapped[str | None] = mapped_column(String(64), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str | None] = mapped_column(String(256))
    body: Mapped[str] = mapped_column(Text)
    """The JSON body, byte-for-byte what is POSTed (and signed)."""
    status: Mapped[str] = mapped_column(String(16))
    """``held`` (waiting for extraction), ``pending``, ``delivered`` or ``failed`` (gave up)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column()
    lease_until: Mapped[datetime | None] = mapped_column()
    """A dispatcher owns the event until then (a killed dispatcher's lease simply expires)."""
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column()

    deliveries: Mapped[list[WebhookDelivery]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="WebhookDelivery.id", back_populates="event"
    )


class WebhookDelivery(Base):
    """One HTTP attempt to deliver an outbox event."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("webhook_outbox.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column()
    duration_ms: Mapped[float] = mapped_column(Float)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    success: Mapped[bool] = mapped_column(Boolean)

    event: Mapped[OutboxEvent] = relationship(back_populates="deliveries")
