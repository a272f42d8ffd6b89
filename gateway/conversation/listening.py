"""Listening: the caller's audio → VAD → endpointer → what the session must act on.

:class:`Listener` resamples the transport's PCM16 to the VAD's 16 kHz, scores each 32 ms frame
with the VAD, runs the endpointer (silence-based, or pause checks for Smart Turn) and applies the
barge-in rule: while the agent is speaking, ``GATEWAY_LISTENING__BARGE_IN_PAUSE_MS`` of speech pauses
it (:class:`SpeechOnset`), ``GATEWAY_LISTENING__BARGE_IN_MIN_MS`` interrupts it (:class:`BargeIn`;
shorter speech is judged by its words, see the session), and a burst too short to be speech that
has stopped lets it go on (:class:`FalseOnset`). With ``GATEWAY_LISTENING__ECHO_GATE`` each VAD frame
the agent's own echo explains (:mod:`gateway.conversation.echo`) counts as silence. Pure but for the
models it is given; time is stream time (ms of caller audio), as in
:mod:`gateway.conversation.endpointing`. After LiveKit Agents' ``AudioRecognition``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gateway.config import GatewaySettings
from gateway.conversation.deps import TurnDetector, VADStream
from gateway.conversation.echo import EchoGate
from gateway.conversation.endpointing import Endpointer, EndpointEvent, PauseDetected, SpeechEnded
from gateway.conversation.vad import FRAME_MS as VAD_FRAME_MS
from gateway.conversation.vad import SAMPLE_RATE_HZ as VAD_RATE_HZ
from shared.audio import Resampler

FALSE_ONSET_SILENCE_MS = 300
"""Silence after a burst too short to be speech (< ``min_speech_ms`` voiced) that lets a paused agent go on."""


@dataclass(frozen=True)
class BargeIn:
    """The caller has spoken ``barge_in_min_ms`` over the agent: interrupt it.

    ``at_ms``: stream time (ms of caller audio since the call started) when the rule fired.
    """

    at_ms: int


@dataclass(frozen=True)
class SpeechOnset:
    """The caller has spoken ``barge_in_pause_ms`` over the agent: pause it until it is known what this is.

    ``at_ms``: stream time of the utterance's first voiced frame.
    """

    at_ms: int


@dataclass(frozen=True)
class FalseOnset:
    """The sound that paused the agent stopped before it was speech: let the agent go on.

    ``at_ms``: stream time when this was decided.
    """

    at_ms: int


ListenEvent = EndpointEvent | BargeIn | SpeechOnset | FalseOnset


def new_endpointer(s: GatewaySettings, smart_turn: bool) -> Endpointer:
    """The endpointer the settings ask for: silence-based, or pause checks with an upper bound (Smart Turn)."""
    return Endpointer(
        threshold=s.listening.vad_threshold,
        silence_ms=s.listening.smart_turn_max_silence_ms if smart_turn else s.listening.endpoint_silence_ms,
        min_speech_ms=s.listening.min_speech_ms,
        pre_roll_ms=s.listening.pre_roll_ms,
        frame_ms=VAD_FRAME_MS,
        check_ms=s.listening.smart_turn_pause_ms if smart_turn else None,
        early_ms=s.listening.early_stt_ms if s.listening.early_stt or s.listening.barge_in_pause_ms else None,
    )


class Listener:
    """One call's ears.

    Args:
        settings: thresholds (``vad_threshold``, ``barge_in_min_ms``, endpointing, Smart Turn).
        vad: the call's VAD state (16 kHz frames).
        input_rate_hz: the rate of the PCM16 pushed (Twilio: 8000).
        agent_speaking: whether the agent's audio is playing now (the barge-in rule applies then).
        turn_detector: Smart Turn, when ``turn_detection`` is ``smart_turn``.
        echo_gate: run the echo gate (``listening.echo_gate``, and the carrier does not cancel echo itself).
    """

    def __init__(
        self,
        settings: GatewaySettings,
        vad: VADStream,
        input_rate_hz: int,
        agent_speaking: Callable[[], bool],
        turn_detector: TurnDetector | None = None,
        echo_gate: bool = True,
    ) -> None:
        self.s = settings
        self._vad = vad
        # Soxr's quick quality: a few samples of delay (HQ holds back up to ~110 ms at 8 → 16 kHz,
        # which delays VAD, barge-in and endpointing); phone audio has nothing above 4 kHz to keep.
        self._resampler = Resampler(input_rate_hz, VAD_RATE_HZ, quality="QQ")
        self._agent_speaking = agent_speaking
        self.turn_detector = turn_detector
        self.endpointer = new_endpointer(settings, turn_detector is not None)
        self._barging = False
        self._onset = False
        """A :class:`SpeechOnset` was emitted for the open utterance."""
        self.echo = (
            EchoGate(input_rate_hz, margin_db=settings.listening.echo_margin_db)
            if settings.listening.echo_gate and echo_gate
            else None
        )
        self.echo_frames = 0
        """VAD frames whose speech the echo gate ignored."""

    @property
    def now_ms(self) -> int:
        """Stream time: ms of caller audio scored so far."""
        return self.endpointer.now_ms

    @property
    def in_speech(self) -> bool:
        """An utterance is open."""
        return self.endpointer.in_speech

    def played(self, pcm16: np.ndarray, at: float) -> None:
        """The agent's audio (int16 (n,) at the input rate) plays at the caller's side from loop time ``at``
        (the echo gate's reference)."""
        if self.echo is not None:
            self.echo.played(pcm16, at)

    def drop_utterance(self) -> None:
        """Forget the open utterance (speech over the agent judged a backchannel: it is done with)."""
        self.endpointer.reset()
        self._barging = self._onset = False

    async def push(self, pcm16: np.ndarray, arrived: float | None = None) -> list[ListenEvent]:
        """Feed caller audio (int16 (n,) at ``input_rate_hz``, arrived at loop time ``arrived``); the
        events it completes, in order.

        Awaits the VAD's batch (at most ``GATEWAY_VAD_BATCH_WAIT_MS`` a frame)."""
        out: list[ListenEvent] = []
        ep = self.endpointer
        listening = self.s.listening
        if self.echo is not None and arrived is not None:
            self.echo.heard(pcm16, arrived)
        for frame, prob in await self._vad.feed(self._resampler.process(pcm16)):
            if (
                self.echo is not None
                and prob >= listening.vad_threshold - 0.15
                and self.echo.is_echo(frame, ep.now_ms, ep.now_ms + VAD_FRAME_MS)
            ):
                prob = 0.0  # the agent's own voice: silence for turn-taking
                self.echo_frames += 1
            was_open, ended = ep.in_speech, False
            for event in ep.push(frame, prob):
                if isinstance(event, SpeechEnded):
                    self._barging, ended = False, True
                out.append(event)
            speaking = self._agent_speaking()
            if self._onset and not self._barging:
                if (was_open and not ep.in_speech and not ended) or (
                    ep.in_speech and not ep.confirmed and ep.silence_run_ms >= FALSE_ONSET_SILENCE_MS
                ):
                    self._onset = False  # a click, a cough, a bump: not speech
                    out.append(FalseOnset(ep.now_ms))
            if not ep.in_speech:
                self._onset = False
                continue
            if not speaking:
                continue
            if (
                not self._onset
                and listening.barge_in_pause_ms > 0
                and ep.silence_run_ms == 0
                and ep.voiced_ms >= listening.barge_in_pause_ms
            ):
                self._onset = True
                out.append(SpeechOnset(ep.start_ms))
            if not self._barging and ep.voiced_ms >= listening.barge_in_min_ms:
                self._barging = True
                out.append(BargeIn(ep.now_ms))
        return out

    async def check_turn(self, pause: PauseDetected) -> SpeechEnded | None:
        """Ask Smart Turn about the utterance so far; the ended utterance if the caller sounds done.

        ``None`` when the turn is not complete, or the caller spoke again while the model ran.
        """
        assert self.turn_detector is not None, "check_turn needs a turn detector"
        probability = await self.turn_detector.probability(pause.audio)
        ep = self.endpointer
        if probability >= self.s.listening.smart_turn_threshold and ep.in_speech and ep.pause_id == pause.pause_id:
            return ep.commit()
        return None
