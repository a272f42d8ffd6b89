"""The database mode, composed: :class:`DatabaseHooks` (the call hooks) and :class:`DatabaseRuntime`
(everything it runs: engine, migrations, outbox dispatcher, post-call worker).

:class:`DatabaseHooks` joins the two halves of a call's life around the database:
:class:`~gateway.agents.resolver.AgentResolver` (who answers, cached) and
:class:`~gateway.after_call.ledger.CallLedger` (the call's row, recording and webhook events).
It satisfies :class:`gateway.conversation.deps.CallHooks` and
:class:`gateway.agents.profile.AgentDirectory`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

import httpx
from sqlalchemy.engine import make_url

from gateway.after_call.extraction import Extractor
from gateway.after_call.ledger import CallLedger
from gateway.after_call.outbox import OutboxDispatcher, OutboxPolicy
from gateway.after_call.worker import PostCallWorker
from gateway.agents.profile import AgentProfile, CallSummary
from gateway.agents.resolver import PROFILE_CACHE_TTL_S, AgentResolver, WebhookRoute
from gateway.config import GatewaySettings
from gateway.db.engine import Database
from gateway.db.migrate import upgrade_database
from gateway.upstream.llm import LLMClient

log = logging.getLogger(__name__)


class DatabaseHooks:
    """The call hooks backed by the database and the outbox.

    Args:
        settings: gateway settings (policy, default agent, data dir, recording and extraction switches).
        db: the database.
        dispatcher: woken after events are written (``None``: events wait for the next poll).
        worker: woken after a call needs extraction.
        lookup_timeout_s: how long resolving a number may take before the fallback answers, seconds
            (see :meth:`~gateway.agents.resolver.AgentResolver.answer_call`).
        cache_ttl_s: how long the number → agent map answers calls before it is read again, seconds.
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
        self.resolver = AgentResolver(settings, db, lookup_timeout_s, cache_ttl_s)
        self.ledger = CallLedger(settings, db, dispatcher, worker)
        self._routes: dict[str, WebhookRoute | None] = {}
        """Where each call this process serves sends its events (``call_sid`` → route)."""

    async def profile_for(self, call_sid: str, from_: str, to: str, resumed: bool = False) -> AgentProfile:
        """The agent for ``to`` (never raises, never another business's: see ``answer_call``); the
        call's row and ``call.started`` are written in the background, unless the call is
        ``resumed`` (its first gateway wrote them; the end upserts the row either way)."""
        started_at = time.time()
        profile, route = await self.resolver.answer_call(call_sid, to)
        self._routes[call_sid] = route
        if not resumed:
            self.ledger.record_start(call_sid, from_, to, profile, route, started_at)
        return profile

    async def profile_for_agent(self, call_sid: str, from_: str, to: str, agent_id: int | None) -> AgentProfile:
        """The agent ``agent_id`` (``None``: the default one) for a call that chose it (a browser
        call); the call's row and ``call.started`` are written as for a phone call.

        Raises:
            LookupError: no agent has that id.
            Exception: the database failed or timed out (the caller decides: a browser call is refused).
        """
        started_at = time.time()
        profile, route = await self.resolver.answer_agent(agent_id)
        self._routes[call_sid] = route
        self.ledger.record_start(call_sid, from_, to, profile, route, started_at)
        return profile

    def call_moved(self, call_sid: str) -> None:
        """The call is finished by the gateway that resumed it: drop its route here."""
        self._routes.pop(call_sid, None)

    async def call_ended(self, summary: CallSummary) -> None:
        """Keep the call: recording, call row, turns and ``call.completed``; queue the extraction.

        A call whose start this process did not see (the orphan sweeper's) has its route looked up
        again. Never raises; a failure is logged (the turns stay in Redis).
        """
        if summary.call_sid in self._routes:
            route = self._routes.pop(summary.call_sid)
        else:
            route = await self.resolver.route_for(summary.profile)
        await self.ledger.record_end(summary, route)

    async def resolve(self, to: str | None) -> AgentProfile:
        """The profile answering calls to ``to``, recording nothing (``/v1/pipeline``, the sweeper).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database is unavailable.
        """
        return await self.resolver.resolve(to)

    def invalidate(self, numbers: Iterable[str] = ()) -> None:
        """Drop the cached number → agent map (admin writes); see ``AgentResolver.invalidate``."""
        self.resolver.invalidate(numbers)

    @property
    def active_calls(self) -> int:
        """Calls this gateway is serving (profile given, call not ended yet)."""
        return len(self._routes)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded by ``timeout_s`` seconds) for call-start writes and an agent lookup in flight."""
        await asyncio.gather(self.ledger.drain(timeout_s), self.resolver.drain(timeout_s))


class DatabaseRuntime:
    """Everything the database mode runs: engine, migrations, dispatcher, post-call worker and hooks.

    Build with :meth:`start` in the app's lifespan; :meth:`aclose` at shutdown.

    Args:
        settings: gateway settings.
        db: the database (already migrated).
        client: the ``httpx`` client webhooks are posted with.
        llm: the LLM client extractions go through (``None``: one of its own, closed by :meth:`aclose`).
        owns_client: whether :meth:`aclose` closes ``client``.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        db: Database,
        client: httpx.AsyncClient,
        llm: LLMClient | None = None,
        owns_client: bool = True,
    ) -> None:
        self.settings = settings
        self.db = db
        self.client = client
        self._owns_client = owns_client
        policy = OutboxPolicy(
            max_attempts=settings.outbox.max_attempts,
            backoff_base_s=settings.outbox.backoff_base_s,
            backoff_max_s=settings.outbox.backoff_max_s,
            timeout_s=settings.webhook.timeout_s,
            poll_interval_s=settings.outbox.poll_interval_s,
            held_timeout_s=max(600.0, 4 * settings.extraction.timeout_s),
        )
        self.dispatcher = OutboxDispatcher(db, client, policy)
        self._own_llm = llm is None
        if llm is None:
            llm = LLMClient(settings.llm.url, settings.llm.model, settings.llm.api_key.get_secret_value())
        self.llm = llm
        self.extractor = Extractor.sharing(
            llm,
            timeout_s=settings.extraction.timeout_s,
            max_tokens=settings.extraction.max_tokens,
            json_mode=settings.extraction.json_mode,
        )
        self.worker = PostCallWorker(
            db, self.extractor, self.dispatcher, busy=self._calls_in_progress, defer_s=settings.extraction.defer_s
        )
        self.hooks = DatabaseHooks(settings, db, self.dispatcher, self.worker)

    def _calls_in_progress(self) -> bool:
        return self.hooks.active_calls > 0

    @classmethod
    async def start(
        cls, settings: GatewaySettings, http: httpx.AsyncClient | None = None, llm: LLMClient | None = None
    ) -> DatabaseRuntime:
        """Connect, migrate (``GATEWAY_DATABASE__AUTO_MIGRATE``), start the dispatcher and the worker.

        Args:
            settings: gateway settings; the URL (``resolved_database_url``) is normalised here.
            http: the app's shared ``httpx`` client for webhooks (``None``: one of its own, 50
                connections, closed by :meth:`aclose`). Deliveries set their own timeout and never
                follow redirects, whatever the client's defaults.
            llm: the app's LLM client for extractions (``None``: one of its own).

        Raises:
            Exception: the database is unreachable or a migration fails (the gateway does not start).
        """
        db = Database(settings.resolved_database_url)  # Database normalises the URL (drivers filled in)
        if settings.database.auto_migrate:
            await upgrade_database(db)
        owns_client = http is None
        client = http or httpx.AsyncClient(limits=httpx.Limits(max_connections=50), follow_redirects=False)
        runtime = cls(settings, db, client, llm, owns_client=owns_client)
        runtime.dispatcher.start()
        if settings.extraction.enabled:
            runtime.worker.start()
        log.info("database %s ready (%s)", db.dialect, make_url(db.url).render_as_string(hide_password=True))
        return runtime

    async def aclose(self) -> None:
        """Stop the background tasks; close what this runtime made (clients it was not given, the engine)."""
        await self.hooks.drain()
        await self.worker.stop()
        await self.dispatcher.drain(timeout_s=2.0)
        await self.dispatcher.stop()
        if self._own_llm:
            await self.llm.close()
        if self._owns_client:
            await self.client.aclose()
        await self.db.dispose()
