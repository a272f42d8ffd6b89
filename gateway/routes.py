"""HTTP and WebSocket glue of the gateway."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, WebSocket
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, Stream, VoiceResponse

from gateway.admin.auth import require_admin
from gateway.config import GatewaySettings
from gateway.session import CallSession, Deps
from gateway.stream_auth import TOKEN_PARAMETER, stream_signing_url

log = logging.getLogger(__name__)
router = APIRouter()


def _settings(request: Request | WebSocket) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


def public_url(settings: GatewaySettings, request: Request | WebSocket) -> str:
    """The URL Twilio used for this request: ``GATEWAY_PUBLIC_URL`` + path, or the request's own."""
    if settings.public_url:
        url = settings.public_url.rstrip("/") + request.url.path
        return url + (f"?{request.url.query}" if request.url.query else "")
    return str(request.url)


def signature_ok(settings: GatewaySettings, url: str, params: dict[str, Any], signature: str | None) -> bool:
    """Validate ``X-Twilio-Signature`` (twilio's ``RequestValidator``); always true without a token."""
    token = settings.twilio_auth_token.get_secret_value()
    if not token:
        return True
    return bool(signature) and RequestValidator(token).validate(url, params, signature or "")


def stream_url(settings: GatewaySettings, request: Request) -> str:
    """``wss://host/twilio/stream`` (``ws://`` when the gateway itself is reached over plain http)."""
    base = settings.public_url.rstrip("/") if settings.public_url else str(request.base_url).rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://") + "/twilio/stream"
    return "ws://" + base.removeprefix("http://") + "/twilio/stream"


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness."""
    return {"status": "ok"}


@router.post("/twilio/voice")
async def voice(request: Request) -> Response:
    """Twilio's voice webhook: answer with TwiML ``<Connect><Stream>`` to our media stream.

    The caller's From/To/CallSid travel as ``<Parameter>``s and come back in the stream's
    ``start.customParameters``. 403 when the Twilio signature does not validate.
    """
    settings = _settings(request)
    form = dict(await request.form())
    if not signature_ok(settings, public_url(settings, request), form, request.headers.get("X-Twilio-Signature")):
        raise HTTPException(status_code=403, detail="invalid Twilio signature")
    response = VoiceResponse()
    connect = Connect()
    stream = Stream(url=stream_url(settings, request))
    for name in ("From", "To", "CallSid"):
        if form.get(name):
            stream.parameter(name=name, value=str(form[name]))
    tokens = request.app.state.deps.stream_tokens if hasattr(request.app.state, "deps") else None
    if tokens is not None:  # binds the stream to this call (gateway/stream_auth.py)
        stream.parameter(name=TOKEN_PARAMETER, value=tokens.issue(str(form.get("CallSid", ""))))
    connect.append(stream)
    response.append(connect)
    return Response(str(response), media_type="application/xml")


@router.websocket("/twilio/stream")
async def media_stream(ws: WebSocket) -> None:
    """Twilio Media Streams: one WebSocket per call, served by a :class:`CallSession`.

    The upgrade's ``X-Twilio-Signature`` is checked over the ``ws(s)://`` URL the TwiML gave
    (behind ``GATEWAY_PUBLIC_URL``: ``wss://<public host>/twilio/stream``); the call token in
    ``start`` is checked by the session.
    """
    settings = _settings(ws)
    signed_url = stream_signing_url(settings.public_url, str(ws.url), ws.url.path, ws.url.query)
    if not signature_ok(settings, signed_url, {}, ws.headers.get("X-Twilio-Signature")):
        await ws.close(code=1008)
        return
    await ws.accept()
    deps: Deps = ws.app.state.deps
    await CallSession(deps, ws).run()


@router.get("/calls/{call_sid:path}", dependencies=[Depends(require_admin)])
async def get_call(call_sid: str, request: Request) -> dict[str, Any]:
    """A call's record and turns from Redis (live or finished); needs the admin key (401 without)."""
    record = await request.app.state.deps.store.get_call(call_sid)
    if record is None:
        raise HTTPException(status_code=404, detail=f"unknown call {call_sid}")
    return dict(record)
