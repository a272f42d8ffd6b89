"""Listening: the caller's audio → VAD → endpointer → what the session must act on.

:class:`Listener` resamples the transport's PCM16 to the VAD's 16 kHz, scores each 32 ms frame
with the VAD, runs the endpointer (silence-based, or pause checks for Smart Turn) and applies the
barge-in rule: while the agent is speaking, only ``GATEWAY_LISTENING__BARGE_IN_MIN_MS`` of continuous
speech interrupts it (shorter speech is judged by its words, see the session). Pure but for the
models it is given; time is stream time (ms of caller audio), as in
:mod:`gateway.conversation.endpointing`. After LiveKit Agents' ``AudioRecognition``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gateway.config import GatewaySettings
from gateway.conversation.deps import TurnDetector, VADStream
from gateway.conversation.endpointing import Endpointer, EndpointEvent, PauseDetected, SpeechEnded
from gateway.conversation.vad import FRAME_MS as VAD_FRAME_MS
from gateway.conversation.vad import SAMPLE_RATE_HZ as VAD_RATE_HZ
from shared.audio import Resampler


@dataclass(frozen=True)
class BargeIn:
    """The caller has spoken ``barge_in_min_ms`` over the agent: interrupt it.

    ``at_ms``: stream time (ms of caller audio since the call started) when the rule fired.
    """

    at_ms: int


ListenEvent = EndpointEvent | BargeIn


def new_endpointer(s: GatewaySettings, smart_turn: bool) -> Endpointer:
    """The endpointer the settings ask for: silence-based, or pause checks with an upper bound (Smart Turn)."""
    return Endpointer(
        threshold=s.listening.vad_threshold,
        silence_ms=s.listening.smart_turn_max_silence_ms if smart_turn else s.listening.endpoint_silence_ms,
        min_speech_ms=s.listening.min_speech_ms,
        pre_roll_ms=s.listening.pre_roll_ms,
        frame_ms=VAD_FRAME_MS,
        check_ms=s.listening.smart_turn_pause_ms if smart_turn else None,
        early_ms=s.listening.early_stt_ms if s.listening.early_stt else None,
    )


class Listener:
    """One call's ears.

    Args:
        settings: thresholds (``vad_threshold``, ``barge_in_min_ms``, endpointing, Smart Turn).
        vad: the call's VAD state (16 kHz frames).
        input_rate_hz: the rate of the PCM16 pushed (Twilio: 8000).
        agent_speaking: whether the agent's audio is playing now (the barge-in rule applies then).
        turn_detector: Smart Turn, when ``turn_detection`` is ``smart_turn``.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        vad: VADStream,
        input_rate_hz: int,
        agent_speaking: Callable[[], bool],
        turn_detector: TurnDetector | None = None,
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

    @property
    def now_ms(self) -> int:
        """Stream time: ms of caller audio scored so far."""
        return self.endpointer.now_ms

    @property
    def in_speech(self) -> bool:
        """An utterance is open."""
        return self.endpointer.in_speech

    async def push(self, pcm16: np.ndarray) -> list[ListenEvent]:
        """Feed caller audio (int16 (n,) at ``input_rate_hz``); the events it completes, in order.

        Awaits the VAD's batch (at most ``GATEWAY_VAD_BATCH_WAIT_MS`` a frame)."""
        out: list[ListenEvent] = []
        ep = self.endpointer
        for frame, prob in await self._vad.feed(self._resampler.process(pcm16)):
            for event in ep.push(frame, prob):
                if isinstance(event, SpeechEnded):
                    self._barging = False
                out.append(event)
            if (
                not self._barging
                and ep.in_speech
                and ep.voiced_ms >= self.s.listening.barge_in_min_ms
                and self._agent_speaking()
            ):
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
