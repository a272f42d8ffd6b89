"""The browser carriers' HTTP glue: the ``/phone`` page, ``WS /ws/conversation`` and WebRTC signalling.

* ``GET /phone`` (``?agent=<id>``): the softphone page (static, no data, strict CSP, like ``/admin``).
* ``GET /webrtc/config``: the ICE servers the page should use (``GATEWAY_BROWSER__ICE_SERVERS``).
* ``POST /webrtc/offer`` ``{sdp, type, agent}`` → ``{sdp, type, session_id}``: one call per offer.
* ``WS /ws/conversation`` (``?agent=<id>``): the WebSocket voice API (``docs/websocket-api.md``).

With ``GATEWAY_BROWSER__REQUIRE_ADMIN_KEY`` the offer and the WebSocket need the admin key
(``Authorization: Bearer <key>`` or ``X-Admin-Key``); otherwise anyone who reaches the gateway may
talk to its agents, as anyone may call its numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from pathlib import Path
from typing import Any, cast

from fastapi import APIRouter, HTTPException, Request, WebSocket
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.datastructures import Headers

from gateway.admin import CSP
from gateway.browser.call import (
    CALLER_ID,
    AgentChooser,
    ChosenAgent,
    Outcome,
    analysis,
    call_to,
    new_call_id,
    parse_agent,
    serve,
)
from gateway.browser.ws_transport import WebSocketTransport
from gateway.config import GatewaySettings
from gateway.conversation.deps import Deps

log = logging.getLogger(__name__)
router = APIRouter(tags=["browser"])
STATIC = Path(__file__).resolve().parent / "static"
_PAGE_HEADERS = {
    "Content-Security-Policy": CSP,  # the page talks to its own origin only
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
AGENT_LOOKUP_TIMEOUT_S = 5.0


def _settings(conn: Request | WebSocket) -> GatewaySettings:
    settings: GatewaySettings = conn.app.state.settings
    return settings


def key_ok(settings: GatewaySettings, headers: Headers) -> bool:
    """Whether a browser call may start: no key required, or the admin key given (constant-time)."""
    if not settings.browser.require_admin_key:
        return True
    expected = settings.admin.api_key.get_secret_value()
    auth = headers.get("authorization", "")
    given = auth[7:] if auth.lower().startswith("bearer ") else headers.get("x-admin-key", "")
    return bool(expected and given) and hmac.compare_digest(given.encode(), expected.encode())


def _chooser(deps: Deps) -> AgentChooser:
    # both hook kinds the lifespan builds (SettingsHooks, DatabaseHooks) pick agents by id
    return cast(AgentChooser, deps.hooks)


@router.get("/phone", include_in_schema=False)
async def phone_page() -> FileResponse:
    """The softphone page."""
    return FileResponse(STATIC / "phone.html", media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


@router.get("/phone/phone.js", include_in_schema=False)
async def phone_script() -> FileResponse:
    """The page's script."""
    return FileResponse(STATIC / "phone.js", media_type="text/javascript; charset=utf-8", headers=_PAGE_HEADERS)


@router.get("/webrtc/config")
async def webrtc_config(request: Request) -> dict[str, Any]:
    """``{"iceServers": [...], "iceTransportPolicy": "all"|"relay", "requireKey": bool}`` for the page's
    ``RTCPeerConnection`` (TURN credentials included: the browser needs them)."""
    s = _settings(request).browser
    return {
        "iceServers": s.ice_servers,
        "iceTransportPolicy": s.ice_transport_policy,
        "requireKey": s.require_admin_key,
    }


class Offer(BaseModel):
    """The page's SDP offer and the agent it calls."""

    sdp: str = Field(max_length=100_000)
    type: str = Field(pattern="^offer$")
    agent: str | None = Field(None, max_length=20, description="Agent id; empty or absent: the default agent")


class Answer(BaseModel):
    """The gateway's SDP answer (every ICE candidate in it) and the call's id."""

    sdp: str
    type: str
    session_id: str


@router.post("/webrtc/offer", response_model=Answer)
async def webrtc_offer(offer: Offer, request: Request) -> Answer:
    """Start a softphone call: answer the offer and serve the call until it ends.

    Errors: 400 a bad agent id or SDP, 401 no/wrong admin key (when required), 404 no such agent,
    503 browser calls disabled or the agents cannot be looked up.
    """
    from aiortc import RTCSessionDescription

    from gateway.browser.rtc import WebRTCTransport, peer_connection

    settings = _settings(request)
    if not settings.browser.enabled:
        raise HTTPException(503, "browser calls are disabled (GATEWAY_BROWSER__ENABLED)")
    if not key_ok(settings, request.headers):
        raise HTTPException(401, "admin API key required (Authorization: Bearer <key>)")
    try:
        agent_id = parse_agent(offer.agent)
    except ValueError as exc:
        raise HTTPException(400, f"bad agent: {exc}") from exc
    deps: Deps = request.app.state.deps
    call_id = new_call_id()
    chosen = await _choose_or_raise(deps, call_id, agent_id)
    pc = peer_connection(settings)
    transport = WebRTCTransport(pc, settings, call_id, CALLER_ID, call_to(agent_id))
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type=offer.type))
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as exc:
        await transport.shutdown()
        raise HTTPException(400, f"cannot answer this offer: {exc}") from exc
    transport.send_event("connected", session_id=call_id, agent=chosen.profile.name,
                         sample_rate=transport.output_format.sample_rate_hz)  # fmt: skip

    async def run() -> None:
        try:
            outcome = await serve(deps, transport, chosen)
            if transport.ended_by_client:
                transport.send_event("analysis", **await _analysis(request, settings, outcome))
                await asyncio.sleep(0.5)  # let the data channel deliver it before the connection closes
        finally:
            await transport.shutdown()

    _track(request.app.state, asyncio.create_task(run(), name=f"webrtc-call-{call_id}"))
    local = pc.localDescription
    return Answer(sdp=local.sdp, type=local.type, session_id=call_id)


async def _choose_or_raise(deps: Deps, call_id: str, agent_id: int | None) -> ChosenAgent:
    try:
        return await ChosenAgent.choose(_chooser(deps), call_id, agent_id, AGENT_LOOKUP_TIMEOUT_S)
    except LookupError as exc:
        raise HTTPException(404, str(exc).strip("'\"")) from exc
    except Exception as exc:
        log.exception("browser call %s: agent lookup failed", call_id)
        raise HTTPException(503, f"agent lookup failed: {exc!r}") from exc


async def _analysis(conn: Request | WebSocket, settings: GatewaySettings, outcome: Outcome) -> dict[str, Any]:
    from gateway.upstream.llm import LLMClient

    llm = conn.app.state.deps.llm
    return await analysis(settings, conn.app.state.db_runtime, llm if isinstance(llm, LLMClient) else None, outcome)


def _track(state: Any, task: asyncio.Task[Any]) -> None:
    """Keep a reference to a softphone call's task (the lifespan waits for them at shutdown)."""
    calls: set[asyncio.Task[Any]] = state.browser_calls
    calls.add(task)
    task.add_done_callback(calls.discard)


@router.websocket("/ws/conversation")
async def conversation(ws: WebSocket) -> None:
    """The WebSocket voice API: one conversation per connection (``docs/websocket-api.md``)."""
    settings = _settings(ws)
    if not settings.browser.enabled or not key_ok(settings, ws.headers):
        await ws.close(code=1008)
        return
    await ws.accept()
    try:
        agent_id = parse_agent(ws.query_params.get("agent"))
    except ValueError as exc:
        await _refuse(ws, f"bad agent: {exc}")
        return
    deps: Deps = ws.app.state.deps
    call_id = new_call_id()
    try:
        chosen = await _choose_or_raise(deps, call_id, agent_id)
    except HTTPException as exc:
        await _refuse(ws, str(exc.detail), 1008 if exc.status_code == 404 else 1011)
        return
    transport = WebSocketTransport(ws, settings, call_id, CALLER_ID, call_to(agent_id))
    async with transport.running():
        transport.send_event("connected", session_id=call_id, agent=chosen.profile.name,
                             sample_rate=transport.output_format.sample_rate_hz)  # fmt: skip
        outcome = await serve(deps, transport, chosen)
        if transport.ended_by_client:
            transport.send_event("analysis", **await _analysis(ws, settings, outcome))
    with contextlib.suppress(Exception):
        await ws.close()


async def _refuse(ws: WebSocket, message: str, code: int = 1008) -> None:
    with contextlib.suppress(Exception):
        await ws.send_json({"type": "error", "message": message})
        await ws.close(code=code)


async def close_browser_calls(state: Any, timeout_s: float) -> None:
    """At shutdown: wait (bounded) for the softphone calls, then cancel what is left."""
    calls: set[asyncio.Task[Any]] = getattr(state, "browser_calls", set())
    if calls:
        _, pending = await asyncio.wait(set(calls), timeout=timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
