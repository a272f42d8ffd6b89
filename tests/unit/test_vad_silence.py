"""Speech after a long digital silence keeps its first words, at every frame phase.

The caller line is often digital silence (μ-law 0xFF) for seconds while the agent speaks. The
gateway resamples it to 16 kHz (±1 LSB of rounding) before the VAD; fed to Silero, that pattern
drifted the LSTM so that at 3 of 8 phases "He turned sharply and faced Gregson across the table"
was found from "sharply" on (start ~740 ms instead of ~220 ms) and the STT heard "and sharply...".
"""

from __future__ import annotations

import numpy as np
import pytest

from gateway.conversation.endpointing import Endpointer, SpeechEnded
from gateway.conversation.vad import FRAME_MS as VAD_FRAME_MS
from gateway.conversation.vad import FRAME_SAMPLES, SileroVAD
from gateway.conversation.vad import SAMPLE_RATE_HZ as VAD_RATE_HZ
from shared.audio import FRAME_MS, TELEPHONY_RATE_HZ, Resampler, ulaw_decode
from tools.twilio_sim import SILENCE_FRAME, caller_frames


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return SileroVAD()


def utterances(vad: SileroVAD, frames: list[bytes]) -> list[SpeechEnded]:
    """The gateway's listening path: μ-law frames → PCM16 → 16 kHz → Silero → endpointer."""
    stream, rs = vad.stream(), Resampler(TELEPHONY_RATE_HZ, VAD_RATE_HZ)
    ep = Endpointer(threshold=0.5, silence_ms=1500, min_speech_ms=250, pre_roll_ms=200, frame_ms=VAD_FRAME_MS)
    out = []
    for f in frames:
        for frame, prob in stream.process(rs.process(ulaw_decode(f))):
            out += [e for e in ep.push(frame, prob) if isinstance(e, SpeechEnded)]
    return out


@pytest.mark.parametrize("lead", range(480, 488))  # ~9.6 s of silence, 8 phases of the 32 ms window
def test_first_words_survive_a_long_digital_silence(vad, arctic_wav, lead):
    speech, _ = caller_frames(arctic_wav)
    ended = utterances(vad, [SILENCE_FRAME] * lead + speech + [SILENCE_FRAME] * 100)
    assert len(ended) == 1
    onset_ms = ended[0].start_ms - lead * FRAME_MS  # first voiced frame, relative to the speech
    assert onset_ms < 400, onset_ms  # "He" starts ~200 ms into the clip
    assert ended[0].audio.size / VAD_RATE_HZ > 2.9  # the whole sentence, not its tail


def test_digital_silence_scores_zero_and_real_quiet_noise_is_still_scored(vad):
    stream = vad.stream()
    silent = stream.process(np.array([1, -1] * (FRAME_SAMPLES * 2), dtype=np.int16))  # ±1 LSB
    assert [p for _, p in silent] == [0.0] * 4
    noise = np.random.default_rng(0).normal(0, 30, FRAME_SAMPLES * 4).astype(np.int16)
    scored = [p for _, p in vad.stream().process(noise)]
    assert len(scored) == 4 and all(0.0 < p < 0.5 for p in scored)
