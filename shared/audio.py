"""Pure audio codecs and resampling used on the telephony path.

Conventions: PCM16 means little-endian signed 16-bit mono samples (``numpy.int16``);
float audio is ``numpy.float32`` in [-1.0, 1.0]. Sample rates are in Hz.

μ-law (PCMU, ITU-T G.711) follows the reference C implementation by Sun Microsystems
(``g711.c``), the same code CPython's ``audioop.lin2ulaw``/``ulaw2lin`` use, so the tables
here are bit-exact with ``audioop`` for all 65,536 PCM16 inputs and 256 μ-law codes.
"""

from __future__ import annotations

import io
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

TELEPHONY_RATE_HZ = 8000
"""Twilio Media Streams carry 8 kHz μ-law, 20 ms (160-byte) frames."""
FRAME_MS = 20
ULAW_SILENCE = 0xFF
"""The μ-law code for PCM 0 (positive zero)."""

_BIAS = 0x84
_CLIP_14 = 8159
_SEG_UEND = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)


def _build_encode_table() -> np.ndarray:
    """Return a (65536,) uint8 table indexed by ``pcm16 & 0xFFFF`` (G.711 μ-law encoder)."""
    pcm16 = np.arange(65536, dtype=np.int32)
    pcm16 = np.where(pcm16 >= 32768, pcm16 - 65536, pcm16)
    val = pcm16 >> 2  # 14-bit, arithmetic shift as audioop does
    mask = np.where(val < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(val), _CLIP_14) + (_BIAS >> 2)
    seg = np.searchsorted(_SEG_UEND, mag, side="left")
    seg_c = np.minimum(seg, 7)
    uval = (seg_c << 4) | ((mag >> (seg_c + 1)) & 0xF)
    uval = np.where(seg >= 8, 0x7F, uval)
    return ((uval ^ mask) & 0xFF).astype(np.uint8)


def _build_decode_table() -> np.ndarray:
    """Return a (256,) int16 table: μ-law code → PCM16 sample (G.711 μ-law decoder)."""
    u = (~np.arange(256, dtype=np.int32)) & 0xFF
    t = ((u & 0x0F) << 3) + _BIAS
    t = t << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _BIAS - t, t - _BIAS).astype(np.int16)


_ENCODE = _build_encode_table()
_DECODE = _build_decode_table()


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """Encode PCM16 samples to μ-law (PCMU) bytes.

    Args:
        pcm: shape (n,), dtype int16.
    Returns:
        n bytes, one μ-law code per sample.
    Raises:
        TypeError: if ``pcm`` is not int16.
    """
    if pcm.dtype != np.int16:
        raise TypeError(f"ulaw_encode expects int16 PCM, got {pcm.dtype}")
    return _ENCODE[pcm.view(np.uint16)].tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    """Decode μ-law (PCMU) bytes to PCM16 samples: n bytes → shape (n,) int16."""
    return _DECODE[np.frombuffer(data, dtype=np.uint8)]


def pcm16_to_float(pcm: np.ndarray) -> np.ndarray:
    """int16 (n,) → float32 (n,) in [-1, 1)."""
    return pcm.astype(np.float32) / 32768.0


def float_to_pcm16(audio: np.ndarray) -> np.ndarray:
    """float32 (n,) in [-1, 1] → int16 (n,), clipped."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)


def resample(audio: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Resample a whole mono signal with soxr (HQ). Keeps the dtype (int16 or float32)."""
    if in_rate == out_rate:
        return audio
    return soxr.resample(audio, in_rate, out_rate, quality="HQ")


class Resampler:
    """Streaming mono resampler (soxr ``ResampleStream``); one instance per audio stream.

    Chunks of any length go in; resampled chunks come out with soxr's small filter delay.
    Call :meth:`flush` at the end of the stream to get the delayed tail.

    Args:
        in_rate: input sample rate, Hz.
        out_rate: output sample rate, Hz.
        dtype: ``"int16"`` or ``"float32"``; input chunks must have that dtype.
        quality: soxr's quality recipe: ``"HQ"`` (default, a longer filter: more delay) or
            ``"QQ"``/``"LQ"``/``"MQ"`` for less delay (see python-soxr's ``ResampleStream``).
    """

    def __init__(self, in_rate: int, out_rate: int, dtype: str = "int16", quality: str = "HQ") -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.dtype = np.dtype(dtype)
        self._stream = (
            soxr.ResampleStream(in_rate, out_rate, 1, dtype=dtype, quality=quality) if in_rate != out_rate else None
        )

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Resample one chunk: shape (n,) → shape (≈ n·out/in,), same dtype."""
        if chunk.dtype != self.dtype:
            raise TypeError(f"Resampler expects {self.dtype}, got {chunk.dtype}")
        if self._stream is None:
            return chunk
        return self._stream.resample_chunk(chunk, last=False)

    def flush(self) -> np.ndarray:
        """Return the filter's remaining output; the resampler is finished afterwards."""
        if self._stream is None:
            return np.zeros(0, dtype=self.dtype)
        return self._stream.resample_chunk(np.zeros(0, dtype=self.dtype), last=True)


def read_audio(source: str | BinaryIO | bytes, target_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read any file soundfile understands (WAV, FLAC, OGG…) as mono float32.

    Args:
        source: path, binary file object or the file's bytes.
        target_rate: resample to this rate (Hz) if given.
    Returns:
        (samples float32 shape (n,), sample rate Hz).
    Raises:
        soundfile.LibsndfileError: if the data is not a readable audio file.
    """
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    data, rate = sf.read(source, dtype="float32", always_2d=True)
    mono = data.mean(axis=1).astype(np.float32)
    if target_rate is not None and target_rate != rate:
        mono = resample(mono, rate, target_rate)
        rate = target_rate
    return mono, int(rate)


def wav_bytes(pcm: np.ndarray, rate: int) -> bytes:
    """Encode mono PCM16 (int16) or float32 samples as a 16-bit PCM WAV file."""
    if pcm.dtype != np.int16:
        pcm = float_to_pcm16(pcm)
    buf = io.BytesIO()
    sf.write(buf, pcm, rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def split_frames(ulaw: bytes, size: int = 160, pad: bool = True) -> list[bytes]:
    """Split μ-law bytes into frames of ``size`` bytes; pad the last with μ-law silence."""
    frames = [ulaw[i : i + size] for i in range(0, len(ulaw), size)]
    if pad and frames and len(frames[-1]) < size:
        frames[-1] = frames[-1] + bytes([ULAW_SILENCE]) * (size - len(frames[-1]))
    return frames
