"""Who answers a call, from the database: the number → agent directory, cached and shared by all calls.

:class:`AgentResolver` reads every agent with its numbers and every correction in one transaction
(the *directory*), renders each reachable agent's :class:`~gateway.agents.profile.AgentProfile`
(greeting, prompt + business facts, voice, global + agent corrections, transfer number) and where
its events go (:class:`WebhookRoute`), and answers calls from it for :data:`PROFILE_CACHE_TTL_S`
(a burst of call starts makes one read, not one each). A number no agent owns gets the
unknown-number answer (``GATEWAY_AGENT__UNKNOWN_NUMBER_POLICY``): the default agent, the settings' agent,
or a polite rejection. When the database cannot answer in time, :meth:`AgentResolver.answer_call`
falls back without ever answering as another business.

Recording the call is not done here: see :mod:`gateway.after_call.ledger`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.agents.profile import AgentProfile
from gateway.agents.static import settings_profile
from gateway.conversation.corrections import Rule, RuleCorrections
from gateway.db.repos import AgentRepo, CorrectionRepo
from gateway.metrics import ERRORS

if TYPE_CHECKING:
    from gateway.config import GatewaySettings
    from gateway.db.engine import Database
    from gateway.db.models import Agent

log = logging.getLogger(__name__)

PROFILE_CACHE_TTL_S = 5.0
"""How long the number → agent map read from the database answers calls before it is read again
(admin changes made through this gateway are seen at once; other gateways see them within this)."""
LOOKUP_ATTEMPTS = 2
"""Reads of the map per refresh when the database errors (0.2 s apart), within the lookup timeout."""
UNAVAILABLE_MESSAGE = (
    "Sorry, we're having trouble answering calls right now. Please call back in a few minutes. Goodbye."
)
"""Spoken when the number's agent cannot be looked up and no earlier answer for it is known."""


def render_prompt(system_prompt: str, facts: dict[str, Any]) -> str:
    """The agent's prompt with its business facts: put where ``{facts}`` appears, else appended.

    ``facts`` maps a name (``hours``, ``service_area``, ``prices``…) to text; rendered as
    ``Hours: …`` lines (blank values left out).
    """
    lines = "\n".join(f"{str(k).replace('_', ' ').capitalize()}: {v}" for k, v in facts.items() if str(v).strip())
    if "{facts}" in system_prompt:
        return system_prompt.replace("{facts}", lines)
    return f"{system_prompt}\n\nBusiness facts:\n{lines}" if lines else system_prompt


@dataclass(frozen=True)
class WebhookRoute:
    """Where an agent's events go: URL, signing secret (``None``: unsigned) and the events it wants."""

    url: str
    secret: str | None
    events: tuple[str, ...]

    @classmethod
    def of(cls, agent: Agent) -> WebhookRoute | None:
        """The route of a database agent (``None`` without a webhook URL)."""
        if not agent.webhook_url:
            return None
        return cls(agent.webhook_url, agent.webhook_secret, tuple(agent.webhook_events or ()))


Answer = tuple[AgentProfile, WebhookRoute | None]
"""Who answers a call and where its events go."""


@dataclass(frozen=True)
class _Directory:
    """Every number's answer, read in one transaction: the number → agent profile map."""

    numbers: dict[str, Answer]
    unknown: Answer
    """The answer for a number no agent owns (default agent, settings agent or rejection)."""
    agents: dict[int, Answer]
    """Every agent's answer by id, numbers or not (a browser call picks its agent by id)."""
    loaded_at: float
    """``time.monotonic()`` when the read began."""
    generation: int
    """:meth:`AgentResolver.invalidate` count when the read began (older: read again)."""

    def answer(self, to: str | None) -> Answer:
        return self.numbers.get(to, self.unknown) if to else self.unknown


class AgentResolver:
    """The database's :class:`~gateway.agents.profile.AgentDirectory`, with the unknown-number policy.

    Args:
        settings: gateway settings (unknown-number policy, the settings' agent and webhook).
        db: the database.
        lookup_timeout_s: how long :meth:`answer_call` may take before the fallback answers, seconds.
        cache_ttl_s: how long the number → agent map answers calls before it is read again, seconds.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        db: Database,
        lookup_timeout_s: float = 3.0,
        cache_ttl_s: float = PROFILE_CACHE_TTL_S,
    ) -> None:
        self.settings = settings
        self.db = db
        self.lookup_timeout_s = lookup_timeout_s
        self.cache_ttl_s = cache_ttl_s
        self._directory: _Directory | None = None
        self._generation = 0
        self._loading: asyncio.Task[_Directory] | None = None
        self._loading_generation = -1
        self._secret = settings.webhook.secret.get_secret_value() or None

    def unavailable_profile(self) -> AgentProfile:
        """The polite rejection for a call whose agent cannot be looked up: "please call back".

        Not the settings agent nor the default agent: the number may belong to any business, and a
        caller greeted in another business's name is misled (and that business's owner never hears
        of the call), while a caller told to call back in a few minutes usually does.
        """
        return AgentProfile(
            greeting=UNAVAILABLE_MESSAGE,
            system_prompt="",
            voice=self.settings.agent.voice,
            corrections=RuleCorrections(),
            name="unavailable",
            reject_message=UNAVAILABLE_MESSAGE,
        )

    def invalidate(self, numbers: Iterable[str] = ()) -> None:
        """Forget the cached number → agent map: the next call reads it again (the admin API calls this).

        Args:
            numbers: numbers whose owner may have changed (moved, unmapped, agent deleted); their
                cached answers are not used as a fallback any more either. Other answers stay
                available as the fallback of a failed read (same business, older details).
        """
        self._generation += 1
        gone = set(numbers)
        if gone and self._directory is not None:
            kept = {n: a for n, a in self._directory.numbers.items() if n not in gone}
            self._directory = dataclasses.replace(self._directory, numbers=kept)

    async def resolve(self, to: str | None) -> AgentProfile:
        """The profile answering calls to ``to`` (no call is recorded). Used by ``/v1/pipeline`` too.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the map had to be read and the database failed (twice).
        """
        return (await self.answer(to))[0]

    async def answer(self, to: str | None) -> Answer:
        """The profile for ``to`` and where its events go, from the map (read again when stale).

        Raises:
            Exception: the map had to be read and the database failed (twice).
        """
        return (await self._fresh()).answer(to)

    async def answer_agent(self, agent_id: int | None) -> Answer:
        """The answer of agent ``agent_id`` whether or not it has a number (a browser call, "try
        this agent"); ``None``: the unknown-number answer (the default agent).

        Raises:
            LookupError: no agent has that id.
            Exception: the map had to be read and the database failed (twice), or it took longer
                than ``lookup_timeout_s`` (``TimeoutError``).
        """
        async with asyncio.timeout(self.lookup_timeout_s):
            directory = await self._fresh()
        if agent_id is None:
            return directory.unknown
        if agent_id not in directory.agents:
            raise LookupError(f"no agent {agent_id}")
        return directory.agents[agent_id]

    async def _fresh(self) -> _Directory:
        directory = self._directory
        fresh = (
            directory is not None
            and directory.generation == self._generation
            and time.monotonic() - directory.loaded_at < self.cache_ttl_s
        )
        if not fresh:
            directory = await self._refresh()
        assert directory is not None
        return directory

    async def answer_call(self, call_sid: str, to: str) -> Answer:
        """The answer for a call to ``to``; never raises, and never answers as another business.

        The answer comes from the cached map (:data:`PROFILE_CACHE_TTL_S`, dropped by
        :meth:`invalidate`); when it must be read, one read serves every call waiting. A read that
        fails is retried once; one that fails again or outlasts ``lookup_timeout_s`` (it goes on in
        the background for later calls) leaves the call with, in this order:

        1. the number's last known agent: a business owner prefers their own agent with details
           a few seconds or minutes old to a lost call (likewise the settings/default agent when
           the database maps no number at all: it is the only business);
        2. else :meth:`unavailable_profile`, a polite "please call back" that ends the call. Not
           the settings agent, nor the default agent: we cannot tell whose number this is, and a
           caller greeted as another business is worse off than one asked to call back.
        """
        try:
            async with asyncio.timeout(self.lookup_timeout_s):
                return await self.answer(to)
        except Exception as exc:
            ERRORS.labels("database").inc()
            return self._fallback(call_sid, to, exc)

    async def route_for(self, profile: AgentProfile) -> WebhookRoute | None:
        """Where ``profile``'s events go, looked up again (for a call whose start this process did
        not see); ``None`` when nowhere or when the database fails (logged). Never raises."""
        if profile.reject_message or not profile.webhook_url:
            return None
        if profile.agent_id is None:
            return self._settings_route(profile)
        try:
            async with self.db.sessions() as s:
                agent = await AgentRepo(s).get(profile.agent_id)
        except Exception:
            log.exception("webhook route for agent %s unavailable", profile.name)
            return None
        return WebhookRoute.of(agent) if agent is not None else None

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) for a read of the map in flight."""
        if self._loading is not None:
            await asyncio.wait([self._loading], timeout=timeout_s)

    # ---- the map --------------------------------------------------------------------------
    def _fallback(self, call_sid: str, to: str, exc: BaseException) -> Answer:
        """The answer when the lookup failed: the number's last known agent, else "please call back"."""
        known = self._directory
        if to and known is not None and to in known.numbers:
            age_s = time.monotonic() - known.loaded_at
            log.error(
                "call %s: agent lookup for %s failed (%r); its agent read %.0f s ago answers", call_sid, to, exc, age_s
            )
            return known.numbers[to]
        if known is not None and not known.numbers and known.generation == self._generation:
            # No number has an agent in the database (and none was added since): the answer for
            # every number is the one business there is, so it is no other business's.
            log.error("call %s: agent lookup for %s failed (%r); the only agent answers", call_sid, to, exc)
            return known.unknown
        log.error("call %s: agent lookup for %s failed (%r); the caller is asked to call back", call_sid, to, exc)
        return self.unavailable_profile(), None

    async def _refresh(self) -> _Directory:
        """Read the map once for everyone waiting (single flight), shielded from their timeouts."""
        task = self._loading
        if task is None or task.done() or self._loading_generation != self._generation:
            task = asyncio.create_task(self._load(self._generation), name="agent-map")
            task.add_done_callback(_consume_exception)  # nobody may be waiting any more
            self._loading, self._loading_generation = task, self._generation
        # shield: a slow read finishes in the background (its connection goes back to the pool
        # cleanly, and the calls after it get a fresh map) while these calls go on with the fallback.
        return await asyncio.shield(task)

    async def _load(self, generation: int) -> _Directory:
        for attempt in range(1, LOOKUP_ATTEMPTS + 1):
            try:
                directory = await self._read_directory(generation)
                break
            except Exception as exc:
                if attempt == LOOKUP_ATTEMPTS:
                    raise
                log.warning("reading the agents failed (%r), retrying", exc)
                await asyncio.sleep(0.2)
        if generation == self._generation:  # not invalidated while reading
            self._directory = directory
        return directory

    async def _read_directory(self, generation: int) -> _Directory:
        """Every number's answer in one read transaction (agents with their numbers, all corrections)."""
        loaded_at = time.monotonic()
        async with self.db.sessions() as s:
            agents = await AgentRepo(s).all()
            rows = await CorrectionRepo(s).all()
        global_rules = [Rule(r.pattern, r.replacement, r.is_regex) for r in rows if r.agent_id is None]
        own: dict[int, list[Rule]] = {}
        for r in rows:
            if r.agent_id is not None:
                own.setdefault(r.agent_id, []).append(Rule(r.pattern, r.replacement, r.is_regex))
        default = min((a for a in agents if a.is_default), key=lambda a: a.id, default=None)
        if self.settings.agent.unknown_number_policy != "default":
            default = None
        answers: dict[int, Answer] = {}
        for agent in agents:  # every agent: a browser call reaches one without a number too
            # global rules first: the agent's own override a global literal with the same pattern
            corrections = RuleCorrections([*global_rules, *own.get(agent.id, [])], skip_invalid=True)
            answers[agent.id] = _agent_profile(agent, corrections), WebhookRoute.of(agent)
        numbers = {n.number: answers[agent.id] for agent in agents for n in agent.numbers}
        unknown = answers[default.id] if default is not None else self._unknown_answer(global_rules)
        return _Directory(numbers, unknown, answers, loaded_at, generation)

    def _unknown_answer(self, global_rules: list[Rule]) -> Answer:
        corrections = RuleCorrections.from_table(self.settings.agent.corrections, global_rules, skip_invalid=True)
        if self.settings.agent.unknown_number_policy == "reject":
            rejected = AgentProfile(
                greeting=self.settings.agent.reject_message,
                system_prompt=self.settings.agent.system_prompt,
                voice=self.settings.agent.voice,
                corrections=corrections,
                name="rejected",
                reject_message=self.settings.agent.reject_message,
            )
            return rejected, None
        profile = settings_profile(self.settings, corrections)
        return profile, self._settings_route(profile)

    def _settings_route(self, profile: AgentProfile) -> WebhookRoute | None:
        if not profile.webhook_url:
            return None
        return WebhookRoute(profile.webhook_url, self._secret, tuple(self.settings.webhook.events))


def _agent_profile(agent: Agent, corrections: RuleCorrections) -> AgentProfile:
    return AgentProfile(
        greeting=agent.greeting,
        system_prompt=render_prompt(agent.system_prompt, agent.facts or {}),
        voice=agent.voice,
        language=agent.language,
        corrections=corrections,
        agent_id=agent.id,
        name=agent.name,
        transfer_number=agent.transfer_number,
        webhook_url=agent.webhook_url,
    )


def _consume_exception(task: asyncio.Task[Any]) -> None:
    """Retrieve a finished task's exception (already logged by whoever awaited it, if anyone)."""
    if not task.cancelled():
        task.exception()
