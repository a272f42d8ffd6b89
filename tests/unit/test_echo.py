"""The echo gate (``gateway/conversation/echo.py``) on a simulated speakerphone line.

The agent's "speech" is syllable-like bursts of band-limited noise (4 Hz on/off, random levels);
the line (``bench/robustness/line.py``) feeds it back through a room response, delayed and
attenuated, band-limited and μ-law coded, exactly as ``make eval-robustness`` does."""

from __future__ import annotations

import numpy as np
import pytest

from bench.robustness.line import FRAME_SAMPLES, Echo, PhoneLine, at_level
from gateway.conversation.echo import EchoGate

RATE = 8000
VAD_MS = 32


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Float (n,) at 8 kHz, −20 dBFS active: noise in 120–250 ms syllables with short gaps."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * RATE))
    t = 0
    while t < out.size:
        n, gap = int(rng.uniform(0.12, 0.25) * RATE), int(rng.uniform(0.03, 0.12) * RATE)
        out[t : t + n] = (
            rng.standard_normal(min(n, out.size - t)) * np.hanning(n)[: min(n, out.size - t)] * rng.uniform(0.3, 1)
        )
        t += n + gap
    return at_level(out)


def run_line(
    echo: Echo | None, agent_s: float = 8.0, caller: tuple[float, float] | None = None
) -> tuple[EchoGate, list[tuple[int, float, bool]]]:
    """Play ``agent_s`` of agent speech over the line (the caller talking from ``caller[0]`` to
    ``caller[1]`` s); returns the gate and, per 32 ms frame with sound in it, (stream ms, the caller's
    level over the echo's in dB, judged echo)."""
    agent = speechlike(agent_s, 1)
    caller_audio = speechlike(agent_s, 2)
    mixed, echo_only, caller_only = PhoneLine(echo=echo), PhoneLine(echo=echo), PhoneLine()
    gate = EchoGate(RATE)
    frames: list[tuple[int, float, bool]] = []
    buffers = [np.zeros(0, dtype=np.int16)] * 3
    silent = np.zeros(FRAME_SAMPLES)
    n = VAD_MS * 8
    for k in range(int(agent_s * 50)):
        t = k * 0.02
        played = np.round(agent[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES] * 32768).astype(np.int16)
        gate.played(played, t)  # due to play at t
        talking = caller is not None and caller[0] <= t < caller[1]
        speech = caller_audio[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES] if talking else silent
        pcm = mixed.frame(speech, played)
        gate.heard(pcm, t + 0.02 + (0.004 if k % 7 == 3 else 0.0))  # arrives after capture, some jitter
        parts = (pcm, echo_only.frame(silent, played), caller_only.frame(speech, np.zeros(FRAME_SAMPLES, np.int16)))
        buffers = [np.concatenate([b, p]) for b, p in zip(buffers, parts, strict=True)]
        while buffers[0].size >= n:
            frame, e, c = (b[:n].astype(np.float64) / 32768.0 for b in buffers)
            buffers = [b[n:] for b in buffers]
            start = len(frames) * VAD_MS
            energy = [float(np.mean(x**2)) + 1e-12 for x in (frame, e, c)]
            if energy[0] > 10 ** (-50 / 10):
                over = 10 * np.log10(energy[2] / energy[1])
                frames.append((start, over, gate.is_echo(buffers_frame(frame), start, start + VAD_MS)))
            else:
                frames.append((start, -99.0, True))
    return gate, frames


def buffers_frame(x: np.ndarray) -> np.ndarray:
    return np.round(x * 32768).astype(np.int16)


@pytest.mark.parametrize(("delay_ms", "level_db"), [(80, -6), (150, -10), (300, -20)])
def test_the_echo_path_is_found_and_the_agents_own_voice_is_gated(delay_ms: int, level_db: float) -> None:
    gate, frames = run_line(Echo(delay_ms, level_db))
    assert gate.delay_bins is not None and abs(gate.delay_bins * 10 - delay_ms) <= 20, gate.delay_bins
    assert gate.correlation > 0.7
    after = [echo for ms, _, echo in frames if ms > 2000]  # once the estimate has settled (no caller)
    assert np.mean(after) >= 0.98, np.mean(after)


def test_a_caller_talking_over_the_echo_is_not_gated() -> None:
    gate, frames = run_line(Echo(150, -10), agent_s=10.0, caller=(5.0, 8.0))
    caller = [echo for _, over, echo in frames if over >= 10]  # the caller ≥ 10 dB over the echo
    echo_only = [echo for ms, over, echo in frames if over < -20 and ms > 2000]
    assert len(caller) > 30 and np.mean(caller) <= 0.1, np.mean(caller)  # the caller's words pass
    assert np.mean(echo_only) >= 0.97
    assert gate.delay_bins is not None and abs(gate.delay_bins - 15) <= 2


def test_a_line_without_echo_turns_the_gate_off() -> None:
    gate, frames = run_line(None, agent_s=8.0, caller=(6.0, 8.0))
    assert gate.no_echo and gate.delay_bins is None
    assert not any(echo for _, over, echo in frames if over > -20)


def test_before_any_estimate_the_prior_gates_only_audio_no_louder_than_the_agent() -> None:
    gate = EchoGate(RATE)
    loud = np.full(160, 8000, dtype=np.int16)
    gate.played(loud, 0.0)
    gate.heard(np.zeros(160, dtype=np.int16), 0.02)
    assert gate.delay_bins is None
    assert gate.is_echo((loud * 0.3).astype(np.int16), 0, 32)  # quieter than the agent: may be its echo
    assert not gate.is_echo((loud * 3).astype(np.int16), 0, 32)  # far louder: the caller
