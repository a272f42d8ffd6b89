"""Which URL Twilio signs for a media stream, and a per-call token that binds a stream to its call.

Twilio signs a Media Streams WebSocket upgrade like any webhook (``X-Twilio-Signature``, HMAC-SHA1
of the URL, `twilio.com/docs/usage/security`), over the stream URL exactly as the TwiML's
``<Stream url>`` gave it: ``wss://…`` (or ``ws://…``), not ``https://…``. With no body to sign, that
signature covers the URL alone and is the same for every call: a captured header would open any
number of streams with any CallSid. So the voice webhook, which Twilio signs over the call's form
(CallSid included), also issues a short-lived token bound to that CallSid as a TwiML
``<Parameter>``; Twilio hands it back in the stream's ``start.customParameters`` and the session
checks it before serving the call (:meth:`StreamTokens.verify`). Each token opens one stream
(single use, in Redis) and a CallSid has one live stream at a time
(:meth:`~gateway.conversation.store.CallStore.claim_stream`).

Tokens are stateless HMACs (any gateway process can check one another issued), keyed from the
Twilio auth token: ``<expiry unix s>.<hex HMAC-SHA256("switchboard-stream\\0" + CallSid + "." + expiry)>``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from fastapi import Request, WebSocket
from twilio.request_validator import RequestValidator

from gateway.config import GatewaySettings

TOKEN_PARAMETER = "SwitchboardToken"
"""Name of the TwiML ``<Parameter>`` carrying the token."""


def stream_signing_url(public_url: str | None, own_url: str, path: str, query: str = "") -> str:
    """The URL Twilio signed for a stream upgrade that reached us at ``own_url``.

    Args:
        public_url: ``GATEWAY_PUBLIC_URL`` (``https://host`` behind a proxy), or ``None``.
        own_url: the WebSocket's own URL as the gateway saw it (``ws://host/path``).
        path: the request path; query: the raw query string (may be empty).

    Returns:
        ``wss://<public host><path>[?query]`` behind a proxy (``ws://`` for an ``http://`` public
        URL), else ``own_url``.
    """
    if not public_url:
        return own_url
    base = public_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base.removeprefix("https://")
    elif base.startswith("http://"):
        base = "ws://" + base.removeprefix("http://")
    return base + path + (f"?{query}" if query else "")


class StreamTokens:
    """Issue and check per-call stream tokens.

    Args:
        secret: the key material (the Twilio auth token); must not be empty.
        ttl_s: how long a token may wait before its stream opens, seconds.

    Raises:
        ValueError: an empty ``secret``.
    """

    def __init__(self, secret: str, ttl_s: float = 120.0) -> None:
        if not secret:
            raise ValueError("stream tokens need a secret")
        self._key = hmac.new(secret.encode(), b"switchboard-stream-token", hashlib.sha256).digest()
        self.ttl_s = ttl_s

    def _mac(self, call_sid: str, expires: int) -> str:
        msg = b"switchboard-stream\0" + call_sid.encode() + b"." + str(expires).encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def issue(self, call_sid: str, now: float | None = None) -> str:
        """A token for ``call_sid``, valid for ``ttl_s`` seconds from ``now`` (Unix s)."""
        expires = int((time.time() if now is None else now) + self.ttl_s)
        return f"{expires}.{self._mac(call_sid, expires)}"

    def verify(self, call_sid: str, token: str | None, now: float | None = None) -> str | None:
        """Why ``token`` does not admit a stream for ``call_sid``, or ``None`` when it does.

        Returns:
            ``None`` if valid, else a short reason (``missing``, ``malformed``, ``expired``,
            ``wrong call``) for the log and the refusal metric.
        """
        if not token:
            return "missing"
        head, _, mac = token.partition(".")
        if not head.isdigit() or len(mac) != 64:
            return "malformed"
        expires = int(head)
        if not hmac.compare_digest(mac, self._mac(call_sid, expires)):
            return "wrong call"
        if expires < (time.time() if now is None else now):
            return "expired"
        return None


def public_url(settings: GatewaySettings, request: Request | WebSocket) -> str:
    """The URL Twilio used for this request: ``GATEWAY_PUBLIC_URL`` + path, or the request's own."""
    if settings.public_url:
        url = settings.public_url.rstrip("/") + request.url.path
        return url + (f"?{request.url.query}" if request.url.query else "")
    return str(request.url)


def signature_ok(settings: GatewaySettings, url: str, params: dict[str, Any], signature: str | None) -> bool:
    """Validate ``X-Twilio-Signature`` (twilio's ``RequestValidator``); always true without a token."""
    token = settings.twilio.auth_token.get_secret_value()
    if not token:
        return True
    return bool(signature) and RequestValidator(token).validate(url, params, signature or "")


def own_base_url(settings: GatewaySettings, request: Request | WebSocket) -> str:
    """This gateway's public base URL: ``GATEWAY_FLEET__ADVERTISE_URL``, else ``GATEWAY_PUBLIC_URL``,
    else the request's own host (``http://host:port``)."""
    base = settings.fleet.advertise_url or settings.public_url or str(request.base_url)
    return base.rstrip("/")


def stream_url_at(base: str) -> str:
    """The media stream URL of the gateway at ``base``: ``https://h`` → ``wss://h/twilio/stream``
    (``http://h`` → ``ws://h/twilio/stream``)."""
    base = base.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://") + "/twilio/stream"
    return "ws://" + base.removeprefix("http://") + "/twilio/stream"


def stream_url(settings: GatewaySettings, request: Request) -> str:
    """This gateway's ``wss://host/twilio/stream`` (``ws://`` when reached over plain http)."""
    return stream_url_at(own_base_url(settings, request))
