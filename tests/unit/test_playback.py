"""Outbound pacing to Twilio (``gateway/telephony/playback.py``) in virtual loop time.

The pacer keeps Twilio's buffer between ``lead`` and ``lead + tick`` ahead of real time and wakes
once per ``tick``; a ``clear`` drops what is queued; marks keep their place among the frames.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.telephony.playback import Playback
from shared.twilio_media import Clear, Command, SendMark, SendMedia

FRAME_S = 0.02
EPS = 1e-6


class Wire:
    """What the pacer sent, with the loop time of each send."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, Command]] = []

    async def send(self, command: Command) -> None:
        self.sent.append((asyncio.get_running_loop().time(), command))

    def media_times(self) -> list[float]:
        return [t for t, c in self.sent if isinstance(c, SendMedia)]


def frames(n: int) -> list[bytes]:
    """``n`` distinguishable 160-byte μ-law frames."""
    return [bytes([i % 256]) * 160 for i in range(n)]


async def play(wire: Wire, playback: Playback, seconds: float) -> None:
    task = asyncio.create_task(playback.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.looptime
@pytest.mark.parametrize(("lead_ms", "tick_ms"), [(100, 60), (100, 0), (60, 100)])
async def test_frames_stay_between_lead_and_lead_plus_tick_ahead(lead_ms: int, tick_ms: int) -> None:
    wire = Wire()
    playback = Playback(wire.send, "MZ1", lead_ms=lead_ms, tick_ms=tick_ms)
    t0 = asyncio.get_running_loop().time()
    payloads = frames(100)
    playback.enqueue_audio(payloads, "r1")
    await play(wire, playback, 3.0)

    sent = [c for _, c in wire.sent]
    assert [c.payload for c in sent if isinstance(c, SendMedia)] == payloads  # all, in order
    lead, tick = lead_ms / 1000, tick_ms / 1000
    for i, t in enumerate(wire.media_times()):
        due = t0 + i * FRAME_S  # when frame i plays at Twilio
        assert due - t <= lead + tick + EPS, f"frame {i} sent {due - t:.3f}s ahead"
        if due - (lead + tick) > t0:  # past the first burst: never less than lead ahead
            assert due - t >= lead - EPS, f"frame {i} only {due - t:.3f}s ahead"
    wakes = len(set(wire.media_times()))
    first_burst = int((lead + tick) / FRAME_S + EPS) + 1  # due within lead + tick of the start
    per_wake = max(1, round(tick / FRAME_S))
    expected = 1 + -(-(len(payloads) - first_burst) // per_wake)
    assert abs(wakes - expected) <= 2, (wakes, expected)


@pytest.mark.looptime
async def test_clear_drops_queued_frames_and_is_sent_at_once() -> None:
    wire = Wire()
    playback = Playback(wire.send, "MZ1", lead_ms=100, tick_ms=60)
    playback.enqueue_audio(frames(100), "r1")
    task = asyncio.create_task(playback.run())
    await asyncio.sleep(0.5)
    before = len(wire.media_times())
    await playback.clear()
    cleared_at = asyncio.get_running_loop().time()
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert 0 < before < 100
    assert any(isinstance(c, Clear) and t == cleared_at for t, c in wire.sent)
    assert all(t <= cleared_at for t in wire.media_times())  # nothing after the clear
    assert playback.pending_frames == 0


@pytest.mark.looptime
async def test_marks_follow_the_audio_queued_before_them_and_new_replies_start_at_once() -> None:
    wire = Wire()
    started: list[tuple[str, float]] = []

    class Hooks:
        def on_playout_started(self, reply_id: str, at: float) -> None:
            started.append((reply_id, at))

        def on_frame_sent(self, audio: bytes, at: float) -> None:
            pass

    playback = Playback(wire.send, "MZ1", lead_ms=100, tick_ms=60, hooks=Hooks())
    playback.enqueue_audio(frames(10), "r1")
    playback.enqueue_mark("r1:end")
    task = asyncio.create_task(playback.run())
    await asyncio.sleep(2.0)  # r1 has played out; Twilio's buffer is empty
    t_second = asyncio.get_running_loop().time()
    playback.enqueue_audio(frames(5), "r2")
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    kinds = ["mark" if isinstance(c, SendMark) else "media" for _, c in wire.sent]
    assert kinds == ["media"] * 10 + ["mark"] + ["media"] * 5
    assert [r for r, _ in started] == ["r1", "r2"]
    assert started[1][1] == t_second  # an idle pacer sends a new reply's first frame without waiting
