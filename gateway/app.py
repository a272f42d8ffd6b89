"""Composition root of the gateway: clients, Redis, VAD and the webhook sender on ``app.state``.

Smart Turn runs in this process or, with ``GATEWAY_SMART_TURN_BACKEND=stt``, behind the STT
service's batched ``POST /v1/turn`` (then no model is loaded here).

With ``GATEWAY_DATABASE_ENABLED`` (the default) the lifespan also migrates the database and starts
the webhook outbox dispatcher and the post-call worker (:class:`gateway.after_call.runtime.DatabaseRuntime`);
its :class:`~gateway.after_call.runtime.DatabaseHooks` replace the settings-only hooks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway.admin import routers as admin_routers
from gateway.admin.log_routes import RecentLogs
from gateway.browser.routes import close_browser_calls
from gateway.browser.routes import router as browser_router
from gateway.config import GatewaySettings
from gateway.health import router as health_router
from gateway.metrics import watch_event_loop_lag
from gateway.telephony.routes import router as telephony_router
from shared.metrics import mount_metrics


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """Build the gateway app; connections and models are made in the lifespan."""
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logging.getLogger().addHandler(app.state.recent_logs)  # GET /logs: from the start-up on
        import httpx
        from redis.asyncio import Redis

        from gateway.after_call.runtime import DatabaseHooks
        from gateway.after_call.webhook import WebhookSender
        from gateway.agents.static import SettingsHooks
        from gateway.conversation.deps import Deps, TurnDetector
        from gateway.conversation.local_turn import LocalTurnDetector
        from gateway.conversation.store import CallStore
        from gateway.conversation.vad import SileroVAD
        from gateway.telephony.rest import TwilioCalls
        from gateway.upstream.llm import LLMClient
        from gateway.upstream.speech import STTClient, TTSClient
        from gateway.upstream.tts_stream import TTSStreamClient
        from gateway.upstream.turn import RemoteTurnDetector
        from shared.smart_turn import SmartTurn
        from shared.threads import limit_blas_threads

        limit_blas_threads(settings.blas_threads)
        http = httpx.AsyncClient(limits=httpx.Limits(max_connections=200, max_keepalive_connections=50))
        from gateway.after_call.orphans import CallSweeper, new_gateway_id, sweep_database
        from gateway.fleet.drain import Drain
        from gateway.fleet.registry import GatewayRegistry
        from gateway.telephony.signature import StreamTokens

        # Bounded commands: a hung Redis fails a write (the call's writer retries) instead of
        # hanging the call; health checks find a restarted Redis again.
        redis = Redis.from_url(
            settings.redis.url,
            decode_responses=True,
            socket_timeout=settings.redis.socket_timeout_s,
            socket_connect_timeout=settings.redis.socket_timeout_s,
            health_check_interval=30,
        )
        llm = LLMClient(
            settings.llm.url,
            settings.llm.model,
            settings.llm.api_key.get_secret_value(),
            timeout_s=settings.llm.timeout_s,
            max_tokens=settings.llm.max_tokens,
            temperature=settings.llm.temperature,
        )
        webhooks = WebhookSender(http, settings.webhook.timeout_s, settings.webhook.attempts)
        token = settings.twilio.auth_token.get_secret_value()
        twilio = (
            TwilioCalls(settings.twilio.account_sid, token, settings.twilio.api_base_url)
            if settings.twilio.account_sid and token
            else None
        )
        smart_turn: TurnDetector | None = None
        listening = settings.listening
        if listening.turn_detection == "smart_turn" and listening.smart_turn_backend == "stt":  # no model here
            smart_turn = RemoteTurnDetector(http, settings.stt.url, listening.smart_turn_timeout_s)
        elif listening.turn_detection == "smart_turn":
            smart_turn = LocalTurnDetector(SmartTurn(settings.listening.smart_turn_model_path))
        hooks: SettingsHooks | DatabaseHooks = SettingsHooks(settings, webhooks)
        db_runtime = None
        if settings.database.enabled:  # agents, calls and signed webhooks from the database
            from gateway.after_call.runtime import DatabaseRuntime

            db_runtime = await DatabaseRuntime.start(settings)
            hooks = db_runtime.hooks
        app.state.db_runtime = db_runtime
        store = CallStore(redis, settings.redis.record_turns_ttl_s)
        app.state.deps = deps = Deps(
            settings=settings,
            store=store,
            stt=STTClient(http, settings.stt.url, settings.stt.timeout_s),
            tts=TTSStreamClient(settings.tts.url, settings.tts.timeout_s),
            llm=llm,
            vad=SileroVAD(listening.vad_model_path, listening.vad_batch_wait_ms, listening.vad_max_batch),
            hooks=hooks,
            smart_turn=smart_turn,
            carrier=twilio,
            gateway_id=new_gateway_id(),
        )
        app.state.tts_http = TTSClient(http, settings.tts.url, settings.tts.timeout_s)  # the admin pipeline
        app.state.stream_tokens = StreamTokens(token, settings.twilio.stream_token_ttl_s) if token else None
        db_sweep = None
        if db_runtime is not None:
            runtime = db_runtime

            async def db_sweep() -> None:
                await sweep_database(runtime.db, hooks, store, settings.call.max_call_seconds + 60)

        advertised = settings.fleet.advertise_url or settings.public_url
        registry = GatewayRegistry(
            redis, deps.gateway_id, advertised, lambda: deps.live_calls, settings.redis.heartbeat_ttl_s
        )
        registry.start()
        app.state.registry = registry
        drain = Drain(registry, lambda: len(deps.live_calls), settings.fleet.drain_timeout_s)
        drain.install()  # SIGTERM: no new calls, the current ones go on (gateway/fleet/drain.py)
        app.state.drain = drain
        sweeper = CallSweeper(
            store, hooks, deps.gateway_id, sweep_interval_s=settings.redis.orphan_sweep_interval_s, db_sweep=db_sweep
        )
        sweeper.start()
        app.state.sweeper = sweeper
        lag_monitor = asyncio.create_task(watch_event_loop_lag(), name="event-loop-lag")
        try:
            yield
        finally:
            await close_browser_calls(app.state, settings.shutdown_timeout_s)
            logging.getLogger().removeHandler(app.state.recent_logs)
            lag_monitor.cancel()
            drain.uninstall()
            await sweeper.stop()
            await registry.stop()
            if db_runtime is not None:
                await db_runtime.aclose()
            await webhooks.drain()
            if twilio is not None:
                await twilio.close()
            await llm.close()
            await http.aclose()
            await redis.aclose()

    app = FastAPI(title="Switchboard gateway", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.db_runtime = None
    app.state.stream_tokens = None
    app.state.browser_calls = set()
    app.state.recent_logs = RecentLogs()
    app.state.registry = None
    app.include_router(telephony_router)
    app.include_router(browser_router)
    app.include_router(health_router)
    for admin_router in admin_routers:
        app.include_router(admin_router)
    mount_metrics(app)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness."""
        return {"status": "ok"}

    return app
