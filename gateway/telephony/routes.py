"""Twilio's voice webhook (TwiML) and the Media Streams WebSocket: the HTTP glue of the Twilio carrier."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request, Response, WebSocket

from gateway.config import GatewaySettings
from gateway.conversation.deps import Deps
from gateway.conversation.resume import RESUME_PARAMETER
from gateway.conversation.session import CallSession
from gateway.fleet.registry import GatewayRegistry
from gateway.fleet.routing import Route, route_call
from gateway.telephony import twiml
from gateway.telephony.signature import (
    TOKEN_PARAMETER,
    StreamTokens,
    public_url,
    signature_ok,
    stream_signing_url,
    stream_url,
    stream_url_at,
)
from gateway.telephony.transport import TwilioTransport

log = logging.getLogger(__name__)
router = APIRouter()


def _settings(request: Request | WebSocket) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


@router.post("/twilio/voice")
async def voice(request: Request) -> Response:
    """Twilio's voice webhook: answer with TwiML ``<Connect><Stream>`` to a gateway's media stream.

    The stream goes to the least-loaded live gateway of the registry (:mod:`gateway.fleet.routing`);
    a ``<Redirect>`` back here follows it, which Twilio runs only when the stream ends without the
    call ending: then the call, still live in Redis, is resumed on another gateway. The caller's
    From/To/CallSid travel as ``<Parameter>``s and come back in the stream's
    ``start.customParameters``. 403 when the Twilio signature does not validate.
    """
    settings = _settings(request)
    form = dict(await request.form())
    if not signature_ok(settings, public_url(settings, request), form, request.headers.get("X-Twilio-Signature")):
        raise HTTPException(status_code=403, detail="invalid Twilio signature")
    call_sid = str(form.get("CallSid", ""))
    registry: GatewayRegistry | None = getattr(request.app.state, "registry", None)
    route = Route("connect")
    if registry is not None:
        route = await route_call(
            registry,
            request.app.state.deps.store,
            call_sid,
            mid_call=form.get("CallStatus") == "in-progress",
            max_routes=settings.fleet.max_routes,
            grant_ttl_s=settings.twilio.stream_token_ttl_s,
        )
    if route.action == "busy":
        return _twiml(twiml.busy())
    if route.action == "hangup":
        return _twiml(twiml.hang_up(settings.agent.trouble_goodbye_text if route.apology else None))
    params = {name: str(form[name]) for name in ("From", "To", "CallSid") if form.get(name)}
    tokens: StreamTokens | None = getattr(request.app.state, "stream_tokens", None)
    if tokens is not None:  # binds the stream to this call (gateway/telephony/signature.py)
        params[TOKEN_PARAMETER] = tokens.issue(call_sid)
    if route.resume_grant is not None:
        params[RESUME_PARAMETER] = route.resume_grant
    url = stream_url_at(route.url) if route.url else stream_url(settings, request)
    return _twiml(twiml.connect_stream(url, params, redirect=request.url.path))


def _twiml(body: str) -> Response:
    return Response(body, media_type="application/xml")


@router.websocket("/twilio/stream")
async def media_stream(ws: WebSocket) -> None:
    """Twilio Media Streams: one WebSocket per call, a :class:`TwilioTransport` served by a :class:`CallSession`.

    The upgrade's ``X-Twilio-Signature`` is checked over the ``ws(s)://`` URL the TwiML gave
    (behind ``GATEWAY_FLEET__ADVERTISE_URL`` or ``GATEWAY_PUBLIC_URL``: ``wss://<that host>/twilio/stream``);
    the call token in ``start`` is checked by the session.
    """
    settings = _settings(ws)
    base = settings.fleet.advertise_url or settings.public_url
    signed_url = stream_signing_url(base, str(ws.url), ws.url.path, ws.url.query)
    if not signature_ok(settings, signed_url, {}, ws.headers.get("X-Twilio-Signature")):
        await ws.close(code=1008)
        return
    await ws.accept()
    deps: Deps = ws.app.state.deps
    tokens: StreamTokens | None = getattr(ws.app.state, "stream_tokens", None)
    await CallSession(deps, TwilioTransport(ws, settings, tokens)).run()
