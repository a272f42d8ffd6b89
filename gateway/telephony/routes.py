"""Twilio's voice webhook (TwiML) and the Media Streams WebSocket: the HTTP glue of the Twilio carrier."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request, Response, WebSocket
from twilio.twiml.voice_response import Connect, Stream, VoiceResponse

from gateway.config import GatewaySettings
from gateway.conversation.deps import Deps
from gateway.conversation.session import CallSession
from gateway.telephony.signature import (
    TOKEN_PARAMETER,
    StreamTokens,
    public_url,
    signature_ok,
    stream_signing_url,
    stream_url,
)
from gateway.telephony.transport import TwilioTransport

log = logging.getLogger(__name__)
router = APIRouter()


def _settings(request: Request | WebSocket) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


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
    tokens: StreamTokens | None = getattr(request.app.state, "stream_tokens", None)
    if tokens is not None:  # binds the stream to this call (gateway/telephony/signature.py)
        stream.parameter(name=TOKEN_PARAMETER, value=tokens.issue(str(form.get("CallSid", ""))))
    connect.append(stream)
    response.append(connect)
    return Response(str(response), media_type="application/xml")


@router.websocket("/twilio/stream")
async def media_stream(ws: WebSocket) -> None:
    """Twilio Media Streams: one WebSocket per call, a :class:`TwilioTransport` served by a :class:`CallSession`.

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
    tokens: StreamTokens | None = getattr(ws.app.state, "stream_tokens", None)
    await CallSession(deps, TwilioTransport(ws, settings, tokens)).run()
