"""A browser call: the agent it chose, the session that serves it, and its analysis at the end.

A phone call finds its agent by the number dialled; a browser call names it (``?agent=<id>``, the
admin's "try this agent"), or takes the default one. :class:`ChosenAgent` looks the agent up
before the session starts (an unknown id is refused with an error, no call is recorded) and then
answers the session's hooks with it, so the call is recorded, extracted and sent to the agent's
webhook exactly as a phone call is. :func:`serve` runs the ordinary
:class:`~gateway.conversation.session.CallSession` over the browser's transport.
:func:`analysis` is what ``end_conversation`` answers: the post-call extraction of the call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from typing import TYPE_CHECKING, Any, Protocol

from gateway.agents.profile import AgentProfile, CallSummary
from gateway.conversation.deps import Deps
from gateway.conversation.session import CallSession
from gateway.conversation.transport import Transport

if TYPE_CHECKING:
    from gateway.after_call.runtime import DatabaseRuntime
    from gateway.config import GatewaySettings
    from gateway.upstream.llm import LLMClient

log = logging.getLogger(__name__)

CALLER_ID = "browser"
"""The ``from`` of every browser call (there is no caller number)."""
ANALYSIS_POLL_S = 0.25


def new_call_id() -> str:
    """A browser call's id: ``WB`` + 32 hex digits (Twilio's CallSids are ``CA`` + 32)."""
    return "WB" + secrets.token_hex(16)


def call_to(agent_id: int | None) -> str:
    """What the call record says a browser call was to: ``agent:<id>`` or ``agent:default``."""
    return f"agent:{agent_id if agent_id is not None else 'default'}"


def parse_agent(value: str | None) -> int | None:
    """The ``agent`` query parameter: ``None`` (absent, empty or ``default``) or an id.

    Raises:
        ValueError: not a positive integer.
    """
    if value is None or value.strip() in ("", "default"):
        return None
    agent_id = int(value)
    if agent_id <= 0:
        raise ValueError(f"agent id must be positive, got {agent_id}")
    return agent_id


class AgentChooser(Protocol):
    """Hooks that can answer a call with an agent picked by id (both hook kinds can)."""

    async def profile_for_agent(self, call_sid: str, from_: str, to: str, agent_id: int | None) -> AgentProfile:
        """The agent ``agent_id`` (``None``: the default), the call's start recorded.

        Raises:
            LookupError: no such agent.
        """
        ...

    async def call_ended(self, summary: CallSummary) -> None:
        """The call is over: store it, queue its webhook."""
        ...


class ChosenAgent:
    """:class:`~gateway.conversation.deps.CallHooks` for one browser call whose agent is already chosen.

    Args:
        hooks: the app's hooks (:class:`AgentChooser`).
        profile: the agent, from :meth:`choose`.
    """

    def __init__(self, hooks: AgentChooser, profile: AgentProfile) -> None:
        self.hooks = hooks
        self.profile = profile

    @classmethod
    async def choose(cls, hooks: AgentChooser, call_id: str, agent_id: int | None, timeout_s: float) -> ChosenAgent:
        """Look the agent up and record the call's start.

        Raises:
            LookupError: no agent ``agent_id`` (or agents by id need the database).
            Exception: the directory failed or took longer than ``timeout_s`` (``TimeoutError``).
        """
        async with asyncio.timeout(timeout_s):
            profile = await hooks.profile_for_agent(call_id, CALLER_ID, call_to(agent_id), agent_id)
        return cls(hooks, profile)

    async def profile_for(self, call_sid: str, from_: str, to: str, resumed: bool = False) -> AgentProfile:
        """The chosen agent (a browser call is never resumed on another gateway)."""
        return self.profile

    def call_moved(self, call_sid: str) -> None:
        """Never happens to a browser call: its socket ends with the gateway that held it."""

    async def call_ended(self, summary: CallSummary) -> None:
        """As for a phone call: the hooks store it and send its webhook."""
        await self.hooks.call_ended(summary)


@dataclasses.dataclass
class Outcome:
    """What a served browser call left: its id, its turns (the record's dicts) and whether it was served."""

    call_id: str
    turns: list[dict[str, Any]]
    served: bool


async def serve(deps: Deps, transport: Transport, chosen: ChosenAgent) -> Outcome:
    """Run the call over ``transport`` with the chosen agent until it ends (the caller leaves,
    the agent hangs up, the length cap), then finish it as any call (record, webhook, extraction).

    The carrier actions (Twilio REST) are not given: a browser call's hang-up just ends the session.
    """
    session = CallSession(dataclasses.replace(deps, hooks=chosen, carrier=None), transport)
    await session.run()
    turns = list(session.writer.record.turns) if session.writer is not None else []
    return Outcome(session.call_sid, turns, served=bool(session.call_sid))


async def analysis(
    settings: GatewaySettings,
    runtime: DatabaseRuntime | None,
    llm: LLMClient | None,
    outcome: Outcome,
) -> dict[str, Any]:
    """The ``analysis`` event's fields: the call's post-call extraction.

    With the database the post-call worker makes it (as for every call) and this waits for its
    result (bounded by twice the extraction timeout plus the defer time); without one it is made
    here through the app's LLM client. ``status``: ``ok``, ``failed``, ``skipped`` (no caller
    speech), ``disabled`` (``GATEWAY_EXTRACTION__ENABLED=false``) or ``timeout``; ``details``: the
    extracted fields (``caller_name``, ``callback_number``, ``address``, ``problem``, ``urgency``,
    ``requested_time_window``, ``summary``) or ``None``. Never raises.
    """
    base: dict[str, Any] = {"session_id": outcome.call_id, "turns": len(outcome.turns)}
    if not settings.extraction.enabled:
        return {**base, "status": "disabled", "details": None}
    if not any(t.get("role") == "user" and str(t.get("text") or "").strip() for t in outcome.turns):
        return {**base, "status": "skipped", "details": None}
    if runtime is not None:
        wait_s = 2 * settings.extraction.timeout_s + settings.extraction.defer_s + 10
        return {**base, **await _stored_extraction(runtime, outcome.call_id, wait_s)}
    if llm is None:
        return {**base, "status": "failed", "details": None, "error": "no LLM client"}
    from gateway.after_call.extraction import Extractor

    x = settings.extraction
    extractor = Extractor.sharing(llm, timeout_s=x.timeout_s, max_tokens=x.max_tokens, json_mode=x.json_mode)
    result = await extractor.extract(outcome.turns, caller_id="")
    details = result.details.model_dump() if result.details else None
    return {**base, "status": "ok" if result.ok else "failed", "details": details, "error": result.error}


async def _stored_extraction(runtime: DatabaseRuntime, call_id: str, wait_s: float) -> dict[str, Any]:
    """Poll the call's row until the worker has stored its extraction (or ``wait_s`` passed)."""
    from gateway.db.repos import CallRepo

    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    runtime.worker.wake()
    while True:
        try:
            async with runtime.db.sessions() as s:
                call = await CallRepo(s).get(call_id, details=True)
                if call is not None and call.extraction_status not in ("none", "pending"):
                    extraction = call.extraction
                    return {
                        "status": extraction.status if extraction is not None else call.extraction_status,
                        "details": extraction.data if extraction is not None else None,
                        "error": extraction.error if extraction is not None else None,
                    }
        except Exception as exc:  # the database is down: say so, keep the session's promise of an answer
            log.warning("call %s: reading the extraction failed: %r", call_id, exc)
            return {"status": "failed", "details": None, "error": f"database: {exc!r}"}
        if loop.time() > deadline:
            return {"status": "timeout", "details": None}
        await asyncio.sleep(ANALYSIS_POLL_S)
