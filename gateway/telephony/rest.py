"""Twilio REST actions on a live call (hang up, transfer), through the official ``twilio`` package.

https://www.twilio.com/docs/voice/api/call-resource#update-a-call-resource — updating a call
with ``status=completed`` hangs up; with new ``twiml`` (``<Dial>``) it leaves the media stream and
transfers. ``GATEWAY_TWILIO__API_BASE_URL`` points the client elsewhere (tests use a local fake).
"""

from __future__ import annotations

import logging

from twilio.base.exceptions import TwilioException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client
from twilio.twiml.voice_response import Dial, VoiceResponse

from shared.errors import UpstreamError

log = logging.getLogger(__name__)


class TwilioCalls:
    """Hang up or transfer calls by SID.

    Args:
        account_sid: Twilio account SID (``AC…``).
        auth_token: the account's auth token.
        base_url: REST API base URL (default Twilio's).
    """

    def __init__(self, account_sid: str, auth_token: str, base_url: str = "https://api.twilio.com") -> None:
        self.client = Client(account_sid, auth_token, http_client=AsyncTwilioHttpClient(timeout=10))
        self.client.api.base_url = base_url.rstrip("/")

    async def hang_up(self, call_sid: str) -> None:
        """End the call.

        Raises:
            UpstreamError: Twilio refused or could not be reached.
        """
        try:
            await self.client.calls(call_sid).update_async(status="completed")
        except (TwilioException, OSError) as exc:
            raise UpstreamError("twilio", f"hang-up failed: {exc}", retryable=True) from exc

    async def transfer(self, call_sid: str, number: str) -> None:
        """Leave the media stream and ``<Dial>`` ``number`` (E.164).

        Raises:
            UpstreamError: Twilio refused or could not be reached.
        """
        response = VoiceResponse()
        response.append(Dial(number))
        try:
            await self.client.calls(call_sid).update_async(twiml=str(response))
        except (TwilioException, OSError) as exc:
            raise UpstreamError("twilio", f"transfer failed: {exc}", retryable=True) from exc

    async def close(self) -> None:
        """Close the HTTP session."""
        http = self.client.http_client
        if isinstance(http, AsyncTwilioHttpClient):
            await http.close()
