"""The TwiML documents the voice webhook answers with (built with the ``twilio`` library).

``<Connect><Stream>`` holds the call until the stream ends; Twilio then runs the next verb
(twilio.com/docs/voice/twiml/connect: "If you do not provide an action URL, <Connect> will finish
and Twilio will move on to the next TwiML verb"). When the caller hangs up the call is over and
nothing more runs; when the gateway hangs up it ends the call through the REST API first. So the
``<Redirect>`` after the stream runs only when a stream ended while the call went on (the gateway
crashed, was shut down, or the network cut it), and brings the call back to the voice webhook,
which resumes it (:mod:`gateway.fleet.routing`). A relative URL is resolved against the
document's own URL (the number's voice URL, or its fallback).
"""

from __future__ import annotations

from collections.abc import Mapping

from twilio.twiml.voice_response import Connect, Stream, VoiceResponse


def connect_stream(url: str, parameters: Mapping[str, str], redirect: str) -> str:
    """``<Connect><Stream url>`` with ``<Parameter>``s, then ``<Redirect method="POST">redirect``."""
    response = VoiceResponse()
    connect = Connect()
    stream = Stream(url=url)
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    connect.append(stream)
    response.append(connect)
    response.redirect(redirect, method="POST")
    return str(response)


def hang_up(apology: str | None = None) -> str:
    """``<Hangup/>``, after ``<Say>apology</Say>`` when given (the call could not be continued)."""
    response = VoiceResponse()
    if apology:
        response.say(apology)
    response.hangup()
    return str(response)


def busy() -> str:
    """``<Reject reason="busy"/>``: a new call that no gateway can take (every one is draining);
    the caller hears a busy tone and the call is not answered."""
    response = VoiceResponse()
    response.reject(reason="busy")
    return str(response)
