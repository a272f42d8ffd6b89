"""The carrier seam: how a live call hears its caller and plays audio back, whatever the carrier.

A :class:`Transport` is one caller connection (a Twilio Media Stream, later a browser). The
conversation reads :data:`TransportEvent` s from it (audio in as PCM16 frames with their stream
time, marks the caller's side has played, DTMF, text) and writes audio out as whole frames in the
transport's :attr:`~Transport.output_format`, with named marks between them; ``clear`` drops
everything queued (barge-in) ahead of any queued audio. The transport paces the audio itself and
reports back through :class:`PlayoutHooks` (first frame of a reply sent, a mark played), so the
conversation never calls down into a socket and the carrier never climbs back into the session.

It also tells the caller's side, through :meth:`Transport.emit`, what the conversation knows as
text (:data:`ConversationEvent`: the caller's transcript, the agent's words as the LLM streams
them, each turn once recorded). A carrier with a screen shows them (the browser carriers of
:mod:`gateway.browser`); one without (Twilio) ignores them.

Shapes after LiveKit Agents' ``AudioOutput`` (``capture_frame`` / ``flush`` / ``clear_buffer``,
playback events) and pipecat's transport/serializer split; Twilio's wire protocol stays in
:mod:`gateway.telephony`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np


@dataclass(frozen=True)
class AudioFormat:
    """What a transport plays: ``pcmu`` (G.711 μ-law, 1 byte a sample) or ``pcm16`` (LE), at ``sample_rate_hz``."""

    encoding: Literal["pcmu", "pcm16"]
    sample_rate_hz: int
    frame_ms: int = 20

    @property
    def frame_bytes(self) -> int:
        """Bytes in one ``frame_ms`` frame (μ-law 8 kHz, 20 ms: 160)."""
        width = 1 if self.encoding == "pcmu" else 2
        return self.sample_rate_hz * self.frame_ms // 1000 * width


@dataclass(frozen=True)
class CallStarted:
    """The caller is connected. ``call_id`` names the call (Twilio: CallSid), ``stream_id`` the connection.

    ``refused``: why the carrier will not serve this connection (a bad stream token), or ``None``.
    """

    call_id: str
    stream_id: str
    from_: str = ""
    to: str = ""
    parameters: Mapping[str, str] = field(default_factory=dict)
    refused: str | None = None


@dataclass(frozen=True)
class AudioIn:
    """Caller audio: ``pcm16`` int16, shape (n,), mono at the transport's ``input_rate_hz``.

    ``timestamp_ms``: where it starts in the caller's stream (ms since the stream began), when the
    carrier says (Twilio's ``media.timestamp``); ``None`` otherwise.
    """

    pcm16: np.ndarray
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class MarkPlayed:
    """The caller's side has played all audio queued before the mark ``name``."""

    name: str


@dataclass(frozen=True)
class DigitPressed:
    """A DTMF key (``0``-``9``, ``*``, ``#``)."""

    digit: str


@dataclass(frozen=True)
class TextIn:
    """Typed text from the caller (a browser's chat box), answered like an utterance."""

    text: str


@dataclass(frozen=True)
class CallerLeft:
    """The caller hung up (Twilio ``stop``); the connection is over."""


TransportEvent = CallStarted | AudioIn | MarkPlayed | DigitPressed | TextIn | CallerLeft


@dataclass(frozen=True)
class CallerTranscript:
    """What the caller said, as transcribed (keyword corrections applied); ``is_final``: the turn's text."""

    text: str
    is_final: bool = True


@dataclass(frozen=True)
class AgentText:
    """The agent's words as they are generated, for reply ``reply_id``.

    ``is_complete`` false: ``text`` is one delta (an LLM token, or a fixed reply's whole text);
    true: the text has ended and ``text`` is all of it (what the agent means to say; a barge-in
    may cut what is heard, see :class:`TurnRecorded`).
    """

    reply_id: str
    text: str
    is_complete: bool = False


@dataclass(frozen=True)
class TurnRecorded:
    """A turn entered the call's record: ``turn`` is its stored dict
    (:meth:`gateway.conversation.transcript.Turn.to_dict`; an agent turn carries ``reply_id``,
    the heard ``text``, ``interrupted`` and ``latency_ms``)."""

    turn: Mapping[str, Any]


ConversationEvent = CallerTranscript | AgentText | TurnRecorded
"""What :meth:`Transport.emit` carries to the caller's side."""


class PlayoutHooks(Protocol):
    """What a transport tells the conversation about its outbound audio (called on the event loop)."""

    def on_playout_started(self, reply_id: str, at: float) -> None:
        """The first frame of ``reply_id`` left for the caller at ``at`` (the event loop's ``loop.time()``)."""

    def on_frame_sent(self, audio: bytes, at: float) -> None:
        """One frame (in the transport's output format) left for the caller; ``at`` is the loop time
        it plays at the caller's side (its due time: a pacer sends ahead of it). The recording and the
        echo gate's reference (:mod:`gateway.conversation.echo`) are placed there."""


class Transport(Protocol):
    """One caller connection, as the conversation sees it (see the module docstring)."""

    input_rate_hz: int
    """Sample rate of :class:`AudioIn` (Twilio: 8000)."""
    output_format: AudioFormat
    """What :meth:`play` takes (Twilio: μ-law 8 kHz, 20 ms frames)."""
    echo_cancelled: bool
    """The carrier already removes the agent's own voice from the caller's audio (a browser's
    acoustic echo canceller), so the echo gate (:mod:`gateway.conversation.echo`) stays off: its
    conservative prior would otherwise hold the caller's first words over the agent as possible echo.
    A phone line: ``False``."""

    def bind(self, hooks: PlayoutHooks) -> None:
        """Who hears about playout; called once, before :meth:`run_output`."""

    async def receive(self) -> TransportEvent | None:
        """The next event from the caller; ``None`` once the connection is closed. Malformed input is skipped."""

    def play(self, audio: bytes, reply_id: str) -> None:
        """Queue ``audio`` (whole frames of :attr:`output_format`) of reply ``reply_id`` for paced playout."""

    def mark(self, name: str) -> None:
        """Queue a mark after the audio queued so far; :class:`MarkPlayed` comes back once it is played."""

    async def clear(self) -> None:
        """Barge-in: drop all queued audio and marks, and stop what the caller's side is playing, now."""

    def pause(self) -> None:
        """Stop sending audio now, keeping what is queued (caller speech over the agent, not yet known
        to be an interruption); what the caller's side has buffered plays on. Idempotent."""

    def resume(self) -> None:
        """Send the paused audio on from where it stopped (it was a backchannel, echo or noise);
        :meth:`clear` also ends a pause. Idempotent."""

    @property
    def pending(self) -> int:
        """Frames and marks queued and not yet sent."""

    async def run_output(self) -> None:
        """Send queued audio in real time until cancelled (one of the call's tasks)."""

    async def close(self, code: int = 1000) -> None:
        """End the connection (hang-up from our side); idempotent, bounded."""

    def emit(self, event: ConversationEvent) -> None:
        """Show ``event`` on the caller's side, if it has a screen (Twilio: ignored). Never blocks nor raises."""
