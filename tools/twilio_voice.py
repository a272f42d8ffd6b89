"""Twilio's side of the voice webhook, for the call simulator: signed requests, TwiML, fallback URL.

What Twilio does (twilio.com/docs/voice/twiml, /docs/usage/security, /docs/usage/security/availability-reliability):
POST the number's voice URL with the call's form (``CallSid``, ``From``, ``To``, ``CallStatus``…),
signed with ``X-Twilio-Signature`` over the URL it requested; run the verbs of the TwiML it gets.
A relative URL in a verb is resolved against the URL of the document that holds it. When a
request fails (connection error or HTTP error) Twilio requests the number's **fallback URL**
instead, adding ``ErrorCode`` and ``ErrorUrl``; with no fallback the call ends.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import urljoin

import httpx
from twilio.request_validator import RequestValidator

ERROR_HTTP = "11200"
"""Twilio's error code for an HTTP retrieval failure (sent to the fallback URL as ``ErrorCode``)."""


@dataclass
class Twiml:
    """What the simulator acts on in one TwiML document (URLs absolute, as Twilio would request them).

    ``stream_url``/``parameters``: the ``<Connect><Stream>`` and its ``<Parameter>``s (``None``: no stream).
    ``after``: the ``<Redirect>`` URL run when the stream ends while the call goes on (``None``: the
    call ends then). ``said``: ``<Say>`` texts; ``hangup``: the document ends the call
    (``<Hangup/>``, ``<Reject/>``). ``url``: the document's own URL.
    """

    url: str
    stream_url: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    after: str | None = None
    said: list[str] = field(default_factory=list)
    hangup: bool = False


def parse_twiml(text: str, url: str) -> Twiml:
    """The verbs of a TwiML document fetched from ``url``.

    Raises:
        xml.etree.ElementTree.ParseError: not XML (Twilio then falls back, error 12100).
    """
    root = ET.fromstring(text)
    out = Twiml(url)
    for verb in root:
        if verb.tag == "Connect":
            stream = verb.find("Stream")
            if stream is not None:
                out.stream_url = stream.get("url", "")
                out.parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
        elif verb.tag == "Redirect" and verb.text:
            out.after = urljoin(url, verb.text.strip())
            break  # nothing after a <Redirect> runs
        elif verb.tag == "Say" and verb.text:
            out.said.append(verb.text)
        elif verb.tag in ("Hangup", "Reject"):
            out.hangup = True
            break
    return out


class VoiceWebhook:
    """Requests TwiML as Twilio does.

    Args:
        base_url: where the gateway is reached (``http://127.0.0.1:port``).
        public_url: the gateway's public base URL behind a proxy: Twilio requests (and signs) URLs
            there, the simulator sends them to ``base_url``. ``None``: the same as ``base_url``.
        auth_token: signs requests (``X-Twilio-Signature``) when set.
        fallback_url: the number's voice fallback URL (absolute, Twilio-side), or ``None``.
    """

    def __init__(
        self, base_url: str, public_url: str | None = None, auth_token: str = "", fallback_url: str | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.public_url = public_url.rstrip("/") if public_url else None
        self.validator = RequestValidator(auth_token) if auth_token else None
        self.fallback_url = fallback_url
        self.requests: list[tuple[str, dict[str, str]]] = []
        """Every request made: (Twilio-side URL, form)."""

    @property
    def voice_url(self) -> str:
        """The number's voice URL (Twilio-side): ``<public or base>/twilio/voice``."""
        return (self.public_url or self.base_url) + "/twilio/voice"

    def reachable(self, url: str) -> str:
        """The URL the request is sent to: a public URL mapped onto ``base_url``."""
        if self.public_url and url.startswith(self.public_url):
            return self.base_url + url.removeprefix(self.public_url)
        return url

    async def fetch(self, url: str, form: dict[str, str]) -> Twiml:
        """POST ``form`` to ``url`` (Twilio-side) and parse the TwiML; on failure, the fallback URL.

        Raises:
            httpx.HTTPError: the request failed and there is no fallback (or it failed too).
            xml.etree.ElementTree.ParseError: the answer is not TwiML.
        """
        try:
            return await self._post(url, form)
        except (httpx.HTTPError, ET.ParseError):
            if not self.fallback_url or url == self.fallback_url:
                raise
        return await self._post(self.fallback_url, {**form, "ErrorCode": ERROR_HTTP, "ErrorUrl": url})

    async def _post(self, url: str, form: dict[str, str]) -> Twiml:
        self.requests.append((url, dict(form)))
        headers = {"X-Twilio-Signature": self.validator.compute_signature(url, form)} if self.validator else {}
        async with httpx.AsyncClient() as client:
            resp = await client.post(self.reachable(url), data=form, headers=headers, timeout=10)
        resp.raise_for_status()
        return parse_twiml(resp.text, url)
