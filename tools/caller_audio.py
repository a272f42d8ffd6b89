"""The caller's side of a simulated phone line: recordings as 20 ms μ-law frames, where speech ends."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.audio import (
    FRAME_MS,
    TELEPHONY_RATE_HZ,
    ULAW_SILENCE,
    float_to_pcm16,
    read_audio,
    split_frames,
    ulaw_encode,
)

FRAME_S = FRAME_MS / 1000
"""One Media Streams frame, seconds."""
SILENCE_FRAME = bytes([ULAW_SILENCE]) * (TELEPHONY_RATE_HZ * FRAME_MS // 1000)
"""20 ms of μ-law silence at 8 kHz (160 bytes)."""


def caller_frames(path: str | Path) -> tuple[list[bytes], float]:
    """Load any audio file (any rate) as 20 ms μ-law frames at 8 kHz.

    Returns (frames, speech_end_s): ``speech_end_s`` is where the last sound above −40 dBFS ends,
    so voice-to-voice latency is measured from the end of speech, not of trailing silence.
    """
    audio, _ = read_audio(str(path), target_rate=TELEPHONY_RATE_HZ)
    pcm = float_to_pcm16(audio)
    return split_frames(ulaw_encode(pcm)), speech_end_s(pcm)


def speech_end_s(pcm: np.ndarray, rate_hz: int = TELEPHONY_RATE_HZ) -> float:
    """Where speech ends in PCM16 audio (int16, shape (n,)): the end of the last 20 ms frame whose
    RMS is above −40 dBFS, in seconds; the whole length if no frame is that loud."""
    win = rate_hz * FRAME_MS // 1000
    n = len(pcm) // win
    frames = pcm[: n * win].astype(np.float64).reshape(n, win) / 32768.0
    loud = np.nonzero(np.sqrt(np.mean(frames**2, axis=1)) > 0.01)[0]
    return float((loud[-1] + 1) * FRAME_S) if loud.size else len(pcm) / rate_hz
