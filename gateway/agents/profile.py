"""The seam between a live call and everything around it (tenants, persistence, webhooks).

A :class:`CallSession` asks its hooks which :class:`AgentProfile` answers a call when the stream
starts, and hands them a :class:`CallSummary` when the call ends. :class:`SettingsHooks` is the
simplest implementation: one agent from the settings, and the webhook posted with retries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.after_call.webhook import WebhookSender
from gateway.config import GatewaySettings
from gateway.conversation.corrections import Corrections


@dataclass(frozen=True)
class AgentProfile:
    """Who answers a call: voice, greeting, prompt, corrections, and business routing.

    Attributes:
        agent_id: database id of the agent, or ``None`` for the settings default.
        reject_message: if set, the call is not served: this is spoken and the call ends.
    """

    greeting: str
    system_prompt: str
    voice: str
    corrections: Corrections
    agent_id: int | None = None
    name: str = "default"
    transfer_number: str | None = None
    webhook_url: str | None = None
    reject_message: str | None = None


@dataclass
class CallSummary:
    """Everything known about a finished call.

    Attributes:
        turns: the call's turns as stored in Redis (dicts with role, text, timestamps, …).
        recording_pcm16: both sides mixed, PCM16 8 kHz mono (int16 array), or ``None`` if off.
    """

    call_sid: str
    stream_sid: str
    from_: str
    to: str
    started_at: float
    ended_at: float
    turns: list[dict[str, Any]]
    profile: AgentProfile
    status: str = "completed"
    recording_pcm16: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def webhook_payload(self) -> dict[str, Any]:
        """The ``call.completed`` event body (see README)."""
        return {
            "event": "call.completed",
            "call_sid": self.call_sid,
            "stream_sid": self.stream_sid,
            "from": self.from_,
            "to": self.to,
            "agent": self.profile.name,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_seconds": round(self.ended_at - self.started_at, 3),
            "turns": self.turns,
            **self.extra,
        }


class CallHooks(Protocol):
    """What the gateway does around calls. Implementations must not raise into the call."""

    async def profile_for(self, call_sid: str, from_: str, to: str) -> AgentProfile:
        """The agent that answers a call to ``to`` (E.164); records the call's start."""
        ...

    async def resolve(self, to: str) -> AgentProfile:
        """The agent for ``to``, without recording anything (finishing a dead gateway's call)."""
        ...

    async def call_ended(self, summary: CallSummary) -> None:
        """Called once when the call is over (after its turns are in Redis)."""
        ...


class SettingsHooks:
    """One agent from :class:`GatewaySettings`; ``call.completed`` posted to ``GATEWAY_WEBHOOK_URL``."""

    def __init__(self, settings: GatewaySettings, webhooks: WebhookSender) -> None:
        self.settings = settings
        self.webhooks = webhooks
        self.profile = AgentProfile(
            greeting=settings.greeting,
            system_prompt=settings.system_prompt,
            voice=settings.voice,
            corrections=Corrections(settings.corrections),
            transfer_number=settings.transfer_number,
            webhook_url=settings.webhook_url,
        )

    async def profile_for(self, call_sid: str, from_: str, to: str) -> AgentProfile:
        """Always the settings' agent."""
        return self.profile

    async def resolve(self, to: str) -> AgentProfile:
        """Always the settings' agent."""
        return self.profile

    async def call_ended(self, summary: CallSummary) -> None:
        """Post the webhook in the background (retried in memory)."""
        if summary.profile.webhook_url:
            self.webhooks.submit(summary.profile.webhook_url, summary.webhook_payload())
