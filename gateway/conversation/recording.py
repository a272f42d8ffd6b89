"""Call recording: both sides of a call on one timeline, mixed to mono PCM16 8 kHz (pure, no I/O).

The session feeds every PCM16 chunk it receives (caller) and sends (agent) with its time since the
call started. Each side is a contiguous track: a chunk that starts before the end of the
previous one (a burst sent ahead of real time) follows it directly; a gap longer than
``snap_s`` (silence between replies) is kept as silence; a smaller gap is closed, so arrival
jitter adds no clicks (the track stays within ``snap_s`` of the clock). A carrier whose audio has
another rate (a browser: 16 kHz in, 24 kHz out) is resampled to the recording's rate as it comes.
"""

from __future__ import annotations

import numpy as np

from shared.audio import TELEPHONY_RATE_HZ, Resampler, wav_bytes


class _Track:
    def __init__(self, snap: int, max_samples: int) -> None:
        self.chunks: list[tuple[int, np.ndarray]] = []
        self.end = 0
        self.snap = snap
        self.max_samples = max_samples

    def add(self, pcm: np.ndarray, offset: int) -> None:
        if pcm.size == 0:
            return
        start = self.end if offset - self.end <= self.snap else offset
        if start >= self.max_samples:
            return
        pcm = pcm[: self.max_samples - start]
        self.chunks.append((start, pcm))
        self.end = start + pcm.size

    def truncate(self, at: int) -> None:
        kept: list[tuple[int, np.ndarray]] = []
        for start, pcm in self.chunks:
            if start < at:
                kept.append((start, pcm[: at - start]))
        self.chunks = kept
        self.end = min(self.end, max(at, 0))

    def snapshot(self) -> list[tuple[int, np.ndarray]]:
        """The chunks now, as a new list: the event loop may add chunks while a worker thread mixes."""
        return list(self.chunks)


def _render(chunks: list[tuple[int, np.ndarray]], out: np.ndarray) -> None:
    for start, pcm in chunks:
        out[start : start + pcm.size] += pcm


class CallRecorder:
    """Collects a call's inbound and outbound audio and mixes it.

    Args:
        rate_hz: sample rate of the recording (8000: the phone's).
        snap_s: gaps up to this long between consecutive chunks of one side are closed.
        max_seconds: audio beyond this much call time is dropped (bounds memory).
        inbound_rate_hz, outbound_rate_hz: rates of the caller's and the agent's audio as fed
            (default ``rate_hz``); others are resampled (soxr, streaming) to ``rate_hz``.
    """

    def __init__(
        self,
        rate_hz: int = TELEPHONY_RATE_HZ,
        snap_s: float = 0.06,
        max_seconds: float = 4 * 3600,
        inbound_rate_hz: int | None = None,
        outbound_rate_hz: int | None = None,
    ) -> None:
        self.rate_hz = rate_hz
        snap = round(snap_s * rate_hz)
        max_samples = round(max_seconds * rate_hz)
        self._inbound = _Track(snap, max_samples)
        self._outbound = _Track(snap, max_samples)
        self._in_rs = Resampler(inbound_rate_hz or rate_hz, rate_hz, quality="QQ")
        self._out_rs = Resampler(outbound_rate_hz or rate_hz, rate_hz, quality="QQ")

    def _offset(self, t: float) -> int:
        return max(0, round(t * self.rate_hz))

    def add_inbound(self, pcm16: np.ndarray, t: float) -> None:
        """Caller audio: int16 (n,) at ``inbound_rate_hz`` whose first sample is at ``t`` seconds since call start."""
        self._inbound.add(self._in_rs.process(pcm16), self._offset(t))

    def add_outbound(self, pcm16: np.ndarray, t: float) -> None:
        """Agent audio: int16 (n,) at ``outbound_rate_hz`` sent at ``t`` s since call start (bursts back to back)."""
        self._outbound.add(self._out_rs.process(pcm16), self._offset(t))

    def truncate_outbound(self, t: float) -> None:
        """Drop agent audio after ``t`` seconds (Twilio's buffer was cleared on barge-in: never heard)."""
        self._outbound.truncate(self._offset(t))

    @property
    def duration_s(self) -> float:
        """Length of the mix, seconds."""
        return max(self._inbound.end, self._outbound.end) / self.rate_hz

    def mix(self) -> np.ndarray:
        """Both sides summed (clipped) on one timeline: int16 shape (n,), mono at ``rate_hz``.

        Safe to call from a worker thread while the call's event loop still adds audio (a carrier may
        deliver frames while the call is being finished): it mixes the chunks there were when it
        started, and its length is theirs.
        """
        inbound, outbound = self._inbound.snapshot(), self._outbound.snapshot()
        n = max((start + pcm.size for start, pcm in inbound + outbound), default=0)
        acc = np.zeros(n, dtype=np.int32)
        _render(inbound, acc)
        _render(outbound, acc)
        return np.clip(acc, -32768, 32767).astype(np.int16)

    def wav(self) -> bytes:
        """:meth:`mix` as a 16-bit PCM WAV file."""
        return wav_bytes(self.mix(), self.rate_hz)
