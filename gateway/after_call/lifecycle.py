"""Calls on top of the database: which agent answers, what is kept, and what happens after the call.

:class:`DatabaseHooks` implements :class:`~gateway.agents.profile.CallHooks`:

* ``profile_for`` resolves the called number's agent (greeting, prompt + business facts, voice,
  global + agent corrections, transfer number, webhook) or, for an unknown number, the default
  agent / the settings agent / a polite rejection (``GATEWAY_UNKNOWN_NUMBER_POLICY``), from a
  number → agent map read in one go and cached for a few seconds (a burst of call starts makes
  one read, not one each). The call row and its ``call.started`` event are written in the
  background, off the greeting's path.
* ``call_ended`` writes the recording WAV, then in one transaction the call, its turns and the
  ``call.completed`` event (held until the extraction is stored when extraction is on).

:class:`PostCallWorker` runs extractions in the background (resumed after a restart: the
``pending`` state is in the database) and releases the held events to the outbox dispatcher.
:class:`DatabaseRuntime` builds all of it in the app's lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gateway.after_call.extraction import Extractor
from gateway.after_call.outbox import OutboxDispatcher, OutboxPolicy
from gateway.agents.profile import AgentProfile, CallSummary
from gateway.config import GatewaySettings
from gateway.db.calls import CallRepo
from gateway.db.corrections import Rule, RuleCorrections
from gateway.db.engine import Database
from gateway.db.models import Agent, from_unix
from gateway.db.outbox_repo import OutboxRepo
from gateway.db.repos import AgentRepo, CorrectionRepo
from gateway.metrics import ERRORS
from shared.audio import TELEPHONY_RATE_HZ, wav_bytes

log = logging.getLogger(__name__)

_SAFE_SID = re.compile(r"[^A-Za-z0-9_.-]")
STORE_ATTEMPTS = 3
"""Tries to store a finished call (0.5 s, then 1 s apart) before giving up (the turns stay in Redis)."""
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
    ``Hours: …`` lines.
    """
    lines = "\n".join(f"{str(k).replace('_', ' ').capitalize()}: {v}" for k, v in facts.items() if str(v).strip())
    if "{facts}" in system_prompt:
        return system_prompt.replace("{facts}", lines)
    return f"{system_prompt}\n\nBusiness facts:\n{lines}" if lines else system_prompt


def recording_relpath(call_sid: str) -> str:
    """Where a call's WAV goes, relative to the data dir: ``recordings/<sid>.wav`` (sid sanitised)."""
    return f"recordings/{_SAFE_SID.sub('_', call_sid) or 'call'}.wav"


@dataclass(frozen=True)
class WebhookRoute:
    """Where an agent's events go: URL, signing secret (``None``: unsigned) and the events it wants."""

    url: str
    secret: str | None
    events: tuple[str, ...]


Answer = tuple[AgentProfile, WebhookRoute | None]
"""Who answers a call and where its events go."""


@dataclass(frozen=True)
class _Directory:
    """Every number's answer, read in one transaction: the number → agent profile map."""

    numbers: dict[str, Answer]
    unknown: Answer
    """The answer for a number no agent owns (default agent, settings agent or rejection)."""
    loaded_at: float
    """``time.monotonic()`` when the read began."""
    generation: int
    """:attr:`DatabaseHooks.invalidate` count when the read began (older: read again)."""

    def answer(self, to: str | None) -> Answer:
        return self.numbers.get(to, self.unknown) if to else self.unknown


class DatabaseHooks:
    """:class:`~gateway.agents.profile.CallHooks` backed by the database and the outbox.

    Args:
        settings: gateway settings (policy, default agent, data dir, recording and extraction switches).
        db: the database.
        dispatcher: woken after events are written (``None``: events wait for the next poll).
        worker: woken after a call needs extraction.
        lookup_timeout_s: how long resolving a number may take before the fallback answers
            (see :meth:`profile_for`).
        cache_ttl_s: how long the number → agent map answers calls before it is read again.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        db: Database,
        dispatcher: OutboxDispatcher | None = None,
        worker: PostCallWorker | None = None,
        lookup_timeout_s: float = 3.0,
        cache_ttl_s: float = PROFILE_CACHE_TTL_S,
    ) -> None:
        self.settings = settings
        self.db = db
        self.dispatcher = dispatcher
        self.worker = worker
        self.lookup_timeout_s = lookup_timeout_s
        self.cache_ttl_s = cache_ttl_s
        self._directory: _Directory | None = None
        self._generation = 0
        self._loading: asyncio.Task[_Directory] | None = None
        self._loading_generation = -1
        self._starts: dict[str, asyncio.Task[None]] = {}
        self._routes: dict[str, WebhookRoute | None] = {}
        self._secret = settings.webhook_secret.get_secret_value() or None

    # ---- agent resolution ------------------------------------------------------------
    def settings_profile(self, corrections: RuleCorrections | None = None) -> AgentProfile:
        """The agent the settings describe (``GATEWAY_GREETING``, ``…_SYSTEM_PROMPT``, ``…_WEBHOOK_URL``)."""
        s = self.settings
        return AgentProfile(
            greeting=s.greeting,
            system_prompt=s.system_prompt,
            voice=s.voice,
            corrections=corrections or RuleCorrections.from_table(s.corrections),
            transfer_number=getattr(s, "transfer_number", None),
            webhook_url=s.webhook_url,
        )

    def _agent_profile(self, agent: Agent, corrections: RuleCorrections) -> AgentProfile:
        return AgentProfile(
            greeting=agent.greeting,
            system_prompt=render_prompt(agent.system_prompt, agent.facts or {}),
            voice=agent.voice,
            corrections=corrections,
            agent_id=agent.id,
            name=agent.name,
            transfer_number=agent.transfer_number,
            webhook_url=agent.webhook_url,
        )

    def unavailable_profile(self) -> AgentProfile:
        """The polite rejection for a call whose agent cannot be looked up: "please call back".

        Not the settings agent nor the default agent: the number may belong to any business, and a
        caller greeted in another business's name is misled (and that business's owner never hears
        of the call), while a caller told to call back in a few minutes usually does.
        """
        s = self.settings
        return AgentProfile(
            greeting=UNAVAILABLE_MESSAGE,
            system_prompt="",
            voice=s.voice,
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
            sqlalchemy.exc.SQLAlchemyError: the database is unavailable.
        """
        return (await self._resolve(to))[0]

    async def _resolve(self, to: str | None) -> Answer:
        """The profile for ``to`` and where its events go, from the map (read again when stale).

        Raises:
            Exception: the map had to be read and the database failed (twice).
        """
        directory = self._directory
        fresh = (
            directory is not None
            and directory.generation == self._generation
            and time.monotonic() - directory.loaded_at < self.cache_ttl_s
        )
        if not fresh:
            directory = await self._refresh()
        assert directory is not None
        return directory.answer(to)

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
        if self.settings.unknown_number_policy != "default":
            default = None
        answers: dict[int, Answer] = {}
        for agent in agents:
            if agent.numbers or agent is default:  # only agents a call can reach
                # global rules first: the agent's own override a global literal with the same pattern
                corrections = RuleCorrections([*global_rules, *own.get(agent.id, [])], skip_invalid=True)
                answers[agent.id] = self._agent_answer(agent, corrections)
        numbers = {n.number: answers[agent.id] for agent in agents for n in agent.numbers}
        unknown = answers[default.id] if default is not None else self._unknown_answer(global_rules)
        return _Directory(numbers, unknown, loaded_at, generation)

    def _agent_answer(self, agent: Agent, corrections: RuleCorrections) -> Answer:
        route = (
            WebhookRoute(agent.webhook_url, agent.webhook_secret, tuple(agent.webhook_events or ()))
            if agent.webhook_url
            else None
        )
        return self._agent_profile(agent, corrections), route

    def _unknown_answer(self, global_rules: list[Rule]) -> Answer:
        corrections = RuleCorrections.from_table(self.settings.corrections, global_rules, skip_invalid=True)
        if self.settings.unknown_number_policy == "reject":
            rejected = AgentProfile(
                greeting=self.settings.reject_message,
                system_prompt=self.settings.system_prompt,
                voice=self.settings.voice,
                corrections=corrections,
                name="rejected",
                reject_message=self.settings.reject_message,
            )
            return rejected, None
        profile = self.settings_profile(corrections)
        return profile, self._settings_route(profile)

    def _settings_route(self, profile: AgentProfile) -> WebhookRoute | None:
        if not profile.webhook_url:
            return None
        return WebhookRoute(profile.webhook_url, self._secret, tuple(self.settings.webhook_events))

    async def _route(self, profile: AgentProfile) -> WebhookRoute | None:
        """Where ``profile``'s events go, looked up again (used when the call start was not seen)."""
        if profile.reject_message or not profile.webhook_url:
            return None
        if profile.agent_id is None:
            return self._settings_route(profile)
        async with self.db.sessions() as s:
            agent = await AgentRepo(s).get(profile.agent_id)
        if agent is None or not agent.webhook_url:
            return None
        return WebhookRoute(agent.webhook_url, agent.webhook_secret, tuple(agent.webhook_events or ()))

    # ---- CallHooks -------------------------------------------------------------------
    async def profile_for(self, call_sid: str, from_: str, to: str) -> AgentProfile:
        """The agent for ``to``; never raises, and never answers as another business.

        The answer comes from the cached number → agent map (:data:`PROFILE_CACHE_TTL_S`, dropped by
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
        started_at = time.time()
        try:
            async with asyncio.timeout(self.lookup_timeout_s):
                profile, route = await self._resolve(to)
        except Exception as exc:
            ERRORS.labels("database").inc()
            profile, route = self._fallback(call_sid, to, exc)
        self._routes[call_sid] = route
        task = asyncio.create_task(
            self._record_start(call_sid, from_, to, profile, route, started_at), name=f"call-start-{call_sid}"
        )
        self._starts[call_sid] = task
        task.add_done_callback(lambda t: self._starts.pop(call_sid) if self._starts.get(call_sid) is t else None)
        return profile

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

    async def _safe_route(self, profile: AgentProfile) -> WebhookRoute | None:
        try:
            return await self._route(profile)
        except Exception:
            log.exception("webhook route for agent %s unavailable", profile.name)
            return None

    async def _record_start(
        self,
        call_sid: str,
        from_: str,
        to: str,
        profile: AgentProfile,
        route: WebhookRoute | None,
        started_at: float,
    ) -> None:
        started = from_unix(started_at)
        assert started is not None
        status = "rejected" if profile.reject_message else "in-progress"
        try:
            async with self.db.sessions() as s, s.begin():
                await CallRepo(s).start(call_sid, "", from_, to, profile.agent_id, profile.name, started, status)
                if route is not None and "call.started" in route.events:
                    payload = {
                        "call_sid": call_sid,
                        "from": from_,
                        "to": to,
                        "agent": profile.name,
                        "agent_id": profile.agent_id,
                        "status": status,
                        "started_at": started_at,
                    }
                    await OutboxRepo(s).enqueue(
                        "call.started", payload, route.url, route.secret, call_sid, profile.agent_id
                    )
        except Exception:
            ERRORS.labels("database").inc()
            log.exception("call %s: could not record the call start", call_sid)
            return
        if self.dispatcher is not None:
            self.dispatcher.wake()

    async def call_ended(self, summary: CallSummary) -> None:
        """Keep the call: recording, call row, turns and the ``call.completed`` event; queue the extraction.

        Never raises; a failure is logged (the turns stay in Redis).
        """
        start = self._starts.pop(summary.call_sid, None)
        if start is not None:
            with contextlib.suppress(Exception):
                await start
        profile = summary.profile
        if summary.call_sid in self._routes:
            route = self._routes.pop(summary.call_sid)
        else:
            route = await self._safe_route(profile)
        rejected = profile.reject_message is not None
        status = "rejected" if rejected else summary.status
        recording = await self._write_recording(summary)
        has_speech = any(t.get("role") == "user" and str(t.get("text") or "").strip() for t in summary.turns)
        if not self.settings.extraction_enabled:
            extraction_status = "disabled"
        elif rejected or not has_speech:
            extraction_status = "skipped"
        else:
            extraction_status = "pending"
        started, ended = from_unix(summary.started_at), from_unix(summary.ended_at)
        assert started is not None and ended is not None
        recording_url = None
        if recording:
            recording_url = f"{(self.settings.public_url or '').rstrip('/')}/api/calls/{summary.call_sid}/recording"

        async def store() -> None:
            async with self.db.sessions() as s, s.begin():
                await CallRepo(s).finish(
                    summary.call_sid,
                    stream_sid=summary.stream_sid,
                    from_=summary.from_,
                    to=summary.to,
                    agent_id=profile.agent_id,
                    agent_name=profile.name,
                    started_at=started,
                    ended_at=ended,
                    status=status,
                    turns=summary.turns,
                    recording_path=recording,
                    extraction_status=extraction_status,
                )
                if route is not None and "call.completed" in route.events:
                    payload = summary.webhook_payload()
                    payload.update(
                        status=status,
                        agent_id=profile.agent_id,
                        recording_url=recording_url,
                        extraction_status=extraction_status,
                        extraction=None,
                    )
                    await OutboxRepo(s).enqueue(
                        "call.completed",
                        payload,
                        route.url,
                        route.secret,
                        summary.call_sid,
                        profile.agent_id,
                        held=extraction_status == "pending",
                    )

        for attempt in range(1, STORE_ATTEMPTS + 1):  # the durable record of the call: worth a retry
            try:
                await store()
                break
            except Exception:
                ERRORS.labels("database").inc()
                if attempt == STORE_ATTEMPTS:
                    log.exception("call %s: could not store the finished call", summary.call_sid)
                    return
                log.warning("call %s: storing the call failed (attempt %d), retrying", summary.call_sid, attempt)
                await asyncio.sleep(0.5 * 2 ** (attempt - 1))
        if extraction_status == "pending" and self.worker is not None:
            self.worker.wake()
        if self.dispatcher is not None:
            self.dispatcher.wake()

    async def _write_recording(self, summary: CallSummary) -> str | None:
        if not self.settings.recording_enabled or summary.recording_pcm16 is None:
            return None
        rel = recording_relpath(summary.call_sid)
        path = Path(self.settings.data_dir) / rel
        try:
            data = await asyncio.to_thread(wav_bytes, summary.recording_pcm16, TELEPHONY_RATE_HZ)
            await asyncio.to_thread(_write_atomic, path, data)
        except Exception:
            ERRORS.labels("database").inc()
            log.exception("call %s: could not write the recording", summary.call_sid)
            return None
        return rel

    @property
    def active_calls(self) -> int:
        """Calls this gateway is serving (profile given, call not ended yet)."""
        return len(self._routes)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) for call-start writes and an agent lookup in flight."""
        pending = [*self._starts.values(), *([self._loading] if self._loading is not None else [])]
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)


def _consume_exception(task: asyncio.Task[Any]) -> None:
    """Retrieve a finished task's exception (already logged by whoever awaited it, if anyone)."""
    if not task.cancelled():
        task.exception()


async def _wait_event(event: asyncio.Event, timeout_s: float) -> None:
    """Wait for ``event`` (then clear it) or ``timeout_s``. ``asyncio.timeout``, not ``wait_for``: on
    Python 3.11 ``wait_for`` can swallow a cancellation that races the event, and the task never stops."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
    event.clear()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".wav.part")
    tmp.write_bytes(data)
    tmp.replace(path)


class PostCallWorker:
    """Runs pending extractions one at a time and releases the calls' held webhook events.

    Args:
        db: the database.
        extractor: the LLM extractor.
        dispatcher: woken after events are released.
        poll_interval_s: how often to look for pending work without a wake-up.
        busy: true while live calls need the LLM; an extraction then waits (at most ``defer_s`` seconds).
        defer_s: longest wait for ``busy`` to clear, seconds.
    """

    def __init__(
        self,
        db: Database,
        extractor: Extractor,
        dispatcher: OutboxDispatcher | None = None,
        poll_interval_s: float = 5.0,
        busy: Callable[[], bool] | None = None,
        defer_s: float = 0.0,
    ) -> None:
        self.db = db
        self.extractor = extractor
        self.dispatcher = dispatcher
        self.poll_interval_s = poll_interval_s
        self.busy = busy
        self.defer_s = defer_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="post-call-worker")

    def wake(self) -> None:
        """Look for pending extractions now."""
        self._wake.set()

    async def stop(self) -> None:
        """Cancel the loop (an extraction in flight stays ``pending`` and is redone after a restart)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait([self._task], timeout=5.0)

    async def _run(self) -> None:
        while True:
            try:
                while await self.process_pending():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                ERRORS.labels("extraction").inc()
                log.exception("post-call worker pass failed")
            await _wait_event(self._wake, self.poll_interval_s)

    async def process_pending(self) -> int:
        """Extract the oldest pending call, store the result, release its events; returns calls done (0 or 1)."""
        async with self.db.sessions() as s:
            if not await CallRepo(s).pending_extractions(limit=1):
                return 0
        step = 0.25
        for _ in range(math.ceil(self.defer_s / step)):  # poll: "busy" is a gauge, not an event
            if self.busy is None or not self.busy():
                break
            await asyncio.sleep(step)
        async with self.db.sessions() as s:
            calls = await CallRepo(s).pending_extractions(limit=1)
            if not calls:
                return 0
            call = calls[0]
            sid, caller = call.call_sid, call.from_number
            turns = [{"role": t.role, "text": t.text} for t in call.turns]
        result = await self.extractor.extract(turns, caller_id=caller)
        if not result.ok:
            ERRORS.labels("extraction").inc()
        data = result.details.model_dump() if result.details else None
        async with self.db.sessions() as s, s.begin():
            repo = CallRepo(s)
            fresh = await repo.get(sid)
            if fresh is None:
                return 1
            await repo.save_extraction(
                fresh,
                status="ok" if result.ok else "failed",
                data=data,
                raw=result.raw,
                attempts=result.attempts,
                error=result.error,
                model=result.model,
                duration_ms=result.duration_ms,
            )
            await OutboxRepo(s).release_held(
                sid, {"extraction": data, "extraction_status": "done" if result.ok else "failed"}
            )
        log.info("call %s: extraction %s in %.0f ms", sid, "done" if result.ok else "failed", result.duration_ms)
        if self.dispatcher is not None:
            self.dispatcher.wake()
        return 1


class DatabaseRuntime:
    """Everything the database mode runs: engine, migrations, dispatcher, post-call worker and hooks.

    Build with :meth:`start` in the app's lifespan; :meth:`aclose` at shutdown.
    """

    def __init__(self, settings: GatewaySettings, db: Database, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.db = db
        self.client = client
        policy = OutboxPolicy(
            max_attempts=settings.outbox_max_attempts,
            backoff_base_s=settings.outbox_backoff_base_s,
            backoff_max_s=settings.outbox_backoff_max_s,
            timeout_s=settings.webhook_timeout_s,
            poll_interval_s=settings.outbox_poll_interval_s,
            held_timeout_s=max(600.0, 4 * settings.extraction_timeout_s),
        )
        self.dispatcher = OutboxDispatcher(db, client, policy)
        self.extractor = Extractor(
            settings.llm_url,
            settings.llm_model,
            settings.llm_api_key.get_secret_value(),
            timeout_s=settings.extraction_timeout_s,
            max_tokens=settings.extraction_max_tokens,
            json_mode=settings.extraction_json_mode,
        )
        self.worker = PostCallWorker(
            db, self.extractor, self.dispatcher, busy=self._calls_in_progress, defer_s=settings.extraction_defer_s
        )
        self.hooks = DatabaseHooks(settings, db, self.dispatcher, self.worker)

    def _calls_in_progress(self) -> bool:
        return self.hooks.active_calls > 0

    @classmethod
    async def start(cls, settings: GatewaySettings) -> DatabaseRuntime:
        """Connect, migrate (``GATEWAY_DATABASE_AUTO_MIGRATE``), start the dispatcher and the worker.

        Raises:
            Exception: the database is unreachable or a migration fails (the gateway does not start).
        """
        db = Database(settings.resolved_database_url)
        if settings.database_auto_migrate:
            await db.migrate()
        client = httpx.AsyncClient(limits=httpx.Limits(max_connections=50), follow_redirects=False)
        runtime = cls(settings, db, client)
        runtime.dispatcher.start()
        if settings.extraction_enabled:
            runtime.worker.start()
        log.info("database %s ready (%s)", db.dialect, _redacted(db.url))
        return runtime

    async def aclose(self) -> None:
        """Stop the background tasks, close the clients and the engine."""
        await self.hooks.drain()
        await self.worker.stop()
        await self.dispatcher.drain(timeout_s=2.0)
        await self.dispatcher.stop()
        await self.extractor.close()
        await self.client.aclose()
        await self.db.dispose()


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
