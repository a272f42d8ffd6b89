"""CallRecorder: both sides on one timeline, mixed to int16 8 kHz."""

from __future__ import annotations

import io
import threading

import numpy as np
import soundfile as sf

from gateway.conversation.recording import CallRecorder
from shared.audio import ulaw_decode, ulaw_encode

RATE = 8000


def tone(freq: float, seconds: float, amp: float = 8000) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def frames(pcm: np.ndarray, size: int = 160) -> list[np.ndarray]:
    """20 ms PCM16 frames as a phone line delivers them (through μ-law and back)."""
    ulaw = ulaw_encode(pcm)
    return [ulaw_decode(ulaw[i : i + size]) for i in range(0, len(ulaw), size)]


def test_each_side_lands_at_its_time_and_both_are_mixed() -> None:
    rec = CallRecorder()
    caller = tone(300, 1.0)
    agent = tone(1000, 0.5)
    for i, f in enumerate(frames(caller)):
        rec.add_inbound(f, i * 0.02)
    for i, f in enumerate(frames(agent)):
        rec.add_outbound(f, 2.0 + i * 0.02)
    mix = rec.mix()
    assert mix.dtype == np.int16 and mix.ndim == 1
    assert mix.size == 2.5 * RATE
    np.testing.assert_array_equal(mix[: caller.size], ulaw_decode(ulaw_encode(caller)))
    assert not mix[caller.size : 2 * RATE].any()  # silence between the two
    np.testing.assert_array_equal(mix[2 * RATE :], ulaw_decode(ulaw_encode(agent)))


def test_overlapping_speech_is_summed_and_clipped() -> None:
    rec = CallRecorder()
    loud = np.full(1600, 30000, dtype=np.int16)
    rec.add_inbound(ulaw_decode(ulaw_encode(loud)), 0.0)
    rec.add_outbound(ulaw_decode(ulaw_encode(loud)), 0.0)
    rec.add_outbound(ulaw_decode(ulaw_encode(np.full(1600, -1000, dtype=np.int16))), 0.2)
    mix = rec.mix()
    assert mix[:1600].min() == 32767  # 2 × ~30000 clipped, not wrapped around
    decoded = int(ulaw_decode(ulaw_encode(np.array([-1000], dtype=np.int16)))[0])
    assert mix[1600:].tolist() == [decoded] * 1600


def test_a_burst_sent_ahead_of_time_plays_back_to_back() -> None:
    """Outbound frames sent in a burst (same t) follow each other instead of piling up."""
    rec = CallRecorder()
    agent = tone(500, 0.2)
    for f in frames(agent):
        rec.add_outbound(f, 1.0)
    mix = rec.mix()
    assert mix.size == RATE + agent.size
    np.testing.assert_array_equal(mix[RATE:], ulaw_decode(ulaw_encode(agent)))


def test_jitter_below_snap_is_closed_and_real_gaps_are_kept() -> None:
    rec = CallRecorder(snap_s=0.06)
    f = frames(tone(300, 0.02))[0]
    rec.add_inbound(f, 0.0)
    rec.add_inbound(f, 0.045)  # 25 ms late: closed up
    assert rec.duration_s == 0.04
    rec.add_inbound(f, 1.0)  # a real pause
    assert rec.duration_s == 1.02


def test_truncate_outbound_drops_audio_cleared_on_barge_in() -> None:
    rec = CallRecorder()
    for i, f in enumerate(frames(tone(700, 2.0))):
        rec.add_outbound(f, i * 0.02)
    rec.truncate_outbound(0.5)
    assert rec.duration_s == 0.5
    rec.add_outbound(frames(tone(700, 0.1))[0], 1.0)
    assert rec.mix()[int(0.5 * RATE) : RATE].max() == 0


def test_wav_is_8khz_mono_pcm16_and_memory_is_bounded() -> None:
    rec = CallRecorder(max_seconds=1.0)
    rec.add_inbound(tone(300, 0.5), 0.0)
    rec.add_inbound(tone(300, 0.5), 5.0)  # beyond max_seconds: dropped
    data, rate = sf.read(io.BytesIO(rec.wav()), dtype="int16")
    assert rate == RATE and data.ndim == 1 and data.size == RATE // 2
    assert CallRecorder().mix().size == 0


def test_mixing_in_a_worker_thread_while_audio_still_arrives() -> None:
    """The session mixes with ``asyncio.to_thread`` while the carrier may still deliver frames: a mix
    started then must not fail on chunks added after it began (it once raised ValueError, and the
    call's post-call summary was lost)."""
    rec = CallRecorder()
    frame = np.full(160, 100, dtype=np.int16)
    base = 5_000  # 100 s of both sides before the mixes start
    for i in range(base):
        rec.add_inbound(frame, i * 0.02)
        rec.add_outbound(frame, i * 0.02)

    def arrive() -> None:  # 100 s more, as fast as it goes
        for i in range(base, 2 * base):
            rec.add_inbound(frame, i * 0.02)
            rec.add_outbound(frame, i * 0.02)

    adder = threading.Thread(target=arrive)
    adder.start()
    mixes = []
    while adder.is_alive() or not mixes:
        mixes.append(rec.mix())
    adder.join()
    for mixed in mixes:
        assert mixed.size >= base * 160
        assert np.all(mixed[: base * 160] == 200)  # both sides summed wherever the mix reaches
    assert rec.mix().size == 2 * base * 160 == round(rec.duration_s * 8000)
