"""X-Twilio-Signature is enforced on the voice webhook and on the media stream's upgrade."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import websockets
from twilio.request_validator import RequestValidator

pytestmark = pytest.mark.timeout(60)
FORM = {"CallSid": "CA1", "From": "+15550100001", "To": "+15550100002"}


def test_voice_webhook_rejects_bad_signatures_and_accepts_twilios(gateway):
    url, _ = gateway()  # the fixture sets GATEWAY_TWILIO_AUTH_TOKEN=test-token
    voice = url + "/twilio/voice"
    assert httpx.post(voice, data=FORM).status_code == 403
    assert httpx.post(voice, data=FORM, headers={"X-Twilio-Signature": "forged"}).status_code == 403
    good = RequestValidator("test-token").compute_signature(voice, FORM)
    resp = httpx.post(voice, data=FORM, headers={"X-Twilio-Signature": good})
    assert resp.status_code == 200 and "<Stream" in resp.text
    tampered = {**FORM, "From": "+15559999999"}
    assert httpx.post(voice, data=tampered, headers={"X-Twilio-Signature": good}).status_code == 403


def test_public_url_is_what_gets_validated_behind_a_proxy(gateway):
    url, _ = gateway(public_url="https://pod-8080.proxy.example.net")
    signed_for_public = RequestValidator("test-token").compute_signature(
        "https://pod-8080.proxy.example.net/twilio/voice", FORM
    )
    resp = httpx.post(url + "/twilio/voice", data=FORM, headers={"X-Twilio-Signature": signed_for_public})
    assert resp.status_code == 200
    assert 'url="wss://pod-8080.proxy.example.net/twilio/stream"' in resp.text


def test_stream_upgrade_without_signature_is_refused(gateway):
    url, _ = gateway()
    ws_url = url.replace("http://", "ws://") + "/twilio/stream"

    async def connect(headers: dict[str, str]) -> bool:
        try:
            async with websockets.connect(ws_url, additional_headers=headers) as ws:
                await ws.recv()  # the gateway closes a refused stream at once
        except websockets.ConnectionClosed as exc:
            return exc.rcvd is not None and exc.rcvd.code == 1008
        except websockets.InvalidStatus:
            return True
        return False

    assert asyncio.run(connect({})) is True
    good = RequestValidator("test-token").compute_signature(ws_url, {})
    assert asyncio.run(connect({"X-Twilio-Signature": "forged"})) is True
    # A valid signature opens the stream (it then waits for Twilio's messages).

    async def opens() -> bool:
        async with websockets.connect(ws_url, additional_headers={"X-Twilio-Signature": good}) as ws:
            await ws.send('{"event": "connected", "protocol": "Call", "version": "1.0.0"}')
            return ws.state is websockets.protocol.State.OPEN

    assert asyncio.run(opens())
