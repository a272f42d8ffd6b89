"""What a live call needs from the world, as Protocols: speech-to-text, text-to-speech, the LLM, VAD,
the turn detector, the live-call store and the hooks around the call.

The gateway's lifespan builds the real ones (:mod:`gateway.upstream`, :mod:`gateway.conversation.vad`,
:mod:`gateway.conversation.store`, :mod:`gateway.agents`); ``tests/fakes`` holds scripted ones that
drive a whole call in virtual time with no model. Timing inside the conversation is read from the
event loop's clock (``loop.time()``), so a virtual-time loop drives it too.

After LiveKit Agents' ``stt.STT`` / ``tts.TTS`` / ``llm.LLM`` node interfaces and its
``tests/fake_session.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from gateway.conversation.llm_tools import ToolCall
from gateway.conversation.transport import AudioFormat

if TYPE_CHECKING:
    from gateway.agents.profile import AgentProfile, CallSummary
    from gateway.config import GatewaySettings


class Heard(str):
    """What STT heard: the text itself (a ``str``), with Whisper's scores when the service gives them.

    Attributes:
        language: ISO code decoded ("en", "es"), or ``None``.
        no_speech_prob: Whisper's probability that the audio held no speech (0..1), or ``None``.
        avg_logprob: mean token log-probability of the text (≤ 0), or ``None``.
    """

    language: str | None
    no_speech_prob: float | None
    avg_logprob: float | None

    def __new__(
        cls,
        text: str = "",
        language: str | None = None,
        no_speech_prob: float | None = None,
        avg_logprob: float | None = None,
    ) -> Heard:
        heard = super().__new__(cls, text)
        heard.language, heard.no_speech_prob, heard.avg_logprob = language, no_speech_prob, avg_logprob
        return heard


class SpeechToText(Protocol):
    """Transcribes one utterance."""

    async def transcribe(self, pcm16: np.ndarray, sample_rate: int, language: str | None = None) -> str:
        """Text of ``pcm16`` (int16, shape (n,), mono at ``sample_rate`` Hz); ``""`` for no speech.

        ``language``: ISO code to decode in (``None``: the service's default, or detection on a
        multilingual model). A :class:`Heard` carries the language and Whisper's scores.

        Raises:
            UpstreamError: the service failed (``retryable`` says whether to try again).
        """


@dataclass(frozen=True)
class SpokenSegment:
    """One synthesised segment: ``text`` exactly as sent (what the caller hears), ``audio`` in the
    requested :class:`AudioFormat`, a whole number of frames."""

    text: str
    audio: bytes


class SpeechStream(Protocol):
    """One call's synthesis channel (the TTS WebSocket): many replies, one at a time."""

    def speak(self, text: AsyncIterator[str]) -> AsyncIterator[SpokenSegment]:
        """Stream text deltas in (LLM tokens) and audio out, segment by segment, until the text ends.

        The server splits the text into sentences (one splitter: the TTS service's). Closing the
        iterator early (barge-in cancels the reply) cancels synthesis at once: no audio of this
        reply is yielded afterwards.

        Raises:
            UpstreamError: the TTS service failed or the text source raised it.
        """

    async def aclose(self) -> None:
        """Close the channel (end of call); idempotent."""


class TextToSpeech(Protocol):
    """Opens a synthesis channel per call."""

    async def open(self, voice: str, fmt: AudioFormat) -> SpeechStream:
        """A channel speaking in ``voice``, returning audio as ``fmt``.

        Raises:
            UpstreamError: the service is unreachable or refused the voice/format.
        """


class ChatModel(Protocol):
    """A streamed chat completion with tools (vLLM or the llama.cpp stand-in)."""

    def stream(
        self, messages: list[dict[str, str]], tools: list[dict[str, Any]] | None = None
    ) -> AsyncIterator[str | ToolCall]:
        """Text deltas, then any tool calls the model made.

        Raises:
            UpstreamError: the server failed, or the stream ended without a finish reason.
        """

    async def prewarm(self, messages: list[dict[str, str]], tools: list[dict[str, Any]] | None = None) -> None:
        """Have the server cache the prompt prefix of ``messages`` (one token, result dropped); never raises."""


class VADStream(Protocol):
    """Per-call voice activity state."""

    def process(self, pcm16: np.ndarray) -> Iterable[tuple[np.ndarray, float]]:
        """Feed PCM16 at the VAD's rate; yields (frame, speech probability 0..1) per complete VAD frame."""

    async def feed(self, pcm16: np.ndarray) -> Iterable[tuple[np.ndarray, float]]:
        """As :meth:`process`, on a live call: the frames may be scored in a batch with other calls'."""


class VoiceActivity(Protocol):
    """The process's VAD model (Silero: 512-sample frames at 16 kHz, see :mod:`gateway.conversation.vad`)."""

    def stream(self) -> VADStream:
        """State for one call."""


class TurnDetector(Protocol):
    """End-of-turn model (Smart Turn): is the caller done, from the audio so far?"""

    async def probability(self, pcm16: np.ndarray) -> float:
        """P(turn complete) for the utterance so far (int16 (n,) 16 kHz; the last 8 s count).

        Never raises for a failed model or service: a detector that cannot answer returns 0.0
        ("not done"), so the endpointer's max-silence bound ends the turn.
        """


class LiveCallStore(Protocol):
    """Where a live call's record is mirrored (Redis, :class:`gateway.conversation.store.CallStore`)."""

    async def claim_stream(self, call_sid: str, stream_sid: str, ttl_s: int) -> str | None:
        """Make ``stream_sid`` the call's one live stream; returns the stream already holding it, or ``None``."""

    async def start_call(
        self, call_sid: str, stream_sid: str, from_: str, to: str, started_at: float, gateway_id: str = ""
    ) -> None:
        """Create the live record."""

    async def replace_call(
        self, meta: dict[str, Any], turns: list[dict[str, Any]], actions: list[dict[str, Any]]
    ) -> None:
        """Write a whole call at once (after an outage)."""

    async def set_state(self, call_sid: str, state: str) -> None:
        """Record the turn state."""

    async def append_turn(self, call_sid: str, turn: dict[str, Any]) -> None:
        """Append one turn."""

    async def append_action(self, call_sid: str, action: dict[str, Any]) -> None:
        """Append one tool action."""

    async def end_call(self, call_sid: str, ended_at: float, status: str = "completed") -> None:
        """Close the record."""

    async def get_call(self, call_sid: str) -> dict[str, Any] | None:
        """The call's record with its ``turns`` and ``actions``, or ``None`` (a resumed call's history)."""

    async def stream_of(self, call_sid: str) -> str | None:
        """The stream holding the call's claim now (a lost stream's session checks for a takeover)."""

    async def take_over_stream(self, call_sid: str, stream_sid: str, grant: str, ttl_s: int) -> bool:
        """Give the call's claim to ``stream_sid`` if ``grant`` is the call's resume grant (used up)."""


class CallHooks(Protocol):
    """Everything around a call: who answers it, and what happens once it is over."""

    async def profile_for(self, call_sid: str, from_: str, to: str, resumed: bool = False) -> AgentProfile:
        """The agent answering a call to ``to`` (never raises: falls back to a default or a rejection).

        ``resumed``: the call started on another stream (its start is recorded already).
        """

    def call_moved(self, call_sid: str) -> None:
        """The call went on in another process (a resumed stream): forget it here, record nothing."""

    async def call_ended(self, summary: CallSummary) -> None:
        """The call is over: store it, queue its webhook (bounded by the caller)."""


class CarrierActions(Protocol):
    """Call actions only the carrier can do (Twilio REST): hang up, transfer."""

    async def hang_up(self, call_sid: str) -> None:
        """End the call on the carrier's side. Raises :class:`UpstreamError`."""

    async def transfer(self, call_sid: str, number: str) -> None:
        """Leave the conversation and dial ``number``. Raises :class:`UpstreamError`."""


@dataclass
class Deps:
    """Process-wide collaborators a call uses (built once in the app's lifespan, or fakes in tests)."""

    settings: GatewaySettings
    store: LiveCallStore
    stt: SpeechToText
    tts: TextToSpeech
    llm: ChatModel
    vad: VoiceActivity
    hooks: CallHooks
    smart_turn: TurnDetector | None = None
    carrier: CarrierActions | None = None
    """Hang-up/transfer through the carrier (``None``: no Twilio credentials; the call just ends)."""
    gateway_id: str = ""
    """This process's id, written on each live call (the orphan sweeper reads it)."""
    live_calls: set[str] = field(default_factory=set)
    """CallSids this process serves now."""
