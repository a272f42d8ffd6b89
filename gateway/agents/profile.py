"""Who answers a call and what is known once it is over: :class:`AgentProfile` and :class:`CallSummary`.

A live call asks its hooks (:class:`gateway.conversation.deps.CallHooks`) for an
:class:`AgentProfile` when the stream starts and hands them a :class:`CallSummary` when it ends.
:class:`AgentDirectory` is the read-only half: the profile for a number, recording nothing
(``/v1/pipeline``, the orphan sweeper). Both hook implementations satisfy it:
:class:`gateway.agents.static.SettingsHooks` (one agent from the settings) and
:class:`gateway.after_call.runtime.DatabaseHooks` (the database's agents).

Plain data and Protocols only: this module imports nothing of the gateway at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gateway.conversation.corrections import Corrections


@dataclass(frozen=True)
class AgentProfile:
    """Who answers a call: voice, greeting, prompt, corrections, and business routing.

    Attributes:
        greeting: spoken first, as is.
        system_prompt: the LLM's system prompt, business facts already rendered in.
        voice: the TTS voice (Kokoro name, ``af_heart``).
        corrections: applied to every transcript before the LLM sees it.
        agent_id: database id of the agent, or ``None`` for the settings' agent.
        name: the agent's (business's) name, in logs, the call row and webhooks.
        transfer_number: E.164 number the transfer tool dials, or ``None`` (no transfer).
        webhook_url: where the call's events go (``None``: nowhere).
        reject_message: if set, the call is not served: this is spoken and the call ends.
        language: ``en``, ``es`` or ``auto`` (:mod:`gateway.conversation.language`).
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
    language: str = "en"


@dataclass
class CallSummary:
    """Everything known about a finished call.

    Attributes:
        started_at, ended_at: Unix seconds.
        turns: the call's turns as stored in Redis (dicts with role, text, timestamps, …).
        status: how the call ended (``completed``, ``gateway-lost``, …).
        recording_pcm16: both sides mixed, PCM16 8 kHz mono (int16 array of shape (n,)), or ``None`` if off.
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

    def webhook_payload(self) -> dict[str, Any]:
        """The ``call.completed`` event body (see README): ids, numbers, agent, status, times, turns."""
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
        }


class AgentDirectory(Protocol):
    """Looks up who answers a number, recording nothing."""

    async def resolve(self, to: str | None) -> AgentProfile:
        """The profile answering calls to ``to`` (E.164; ``None``/``""``: the unknown-number answer).

        Raises:
            Exception: the directory's store is unavailable (the database); callers decide the fallback.
        """
        ...
