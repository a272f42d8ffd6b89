"""Turn uploaded bytes into Whisper's input: mono float32 at 16 kHz.

Containers (WAV, FLAC, OGG) are read with libsndfile (``shared.audio.read_audio``) and everything
else FFmpeg knows (MP3, WebM/Opus, M4A…) through PyAV (faster-whisper's ``decode_audio``). Raw
telephony audio is G.711 μ-law (``shared.audio.ulaw_decode``) or PCM16 little-endian; raw input
at other rates is resampled with soxr (``shared.audio.resample``).
"""

from __future__ import annotations

import io

import numpy as np

from shared.audio import TELEPHONY_RATE_HZ, pcm16_to_float, read_audio, resample, ulaw_decode

SAMPLE_RATE_HZ = 16000
"""Whisper's input rate."""
ULAW_FORMATS = frozenset({"mulaw", "ulaw", "mu-law", "pcmu", "g711_ulaw", "basic"})
PCM16_FORMATS = frozenset({"pcm16", "pcm", "s16le", "l16", "linear16"})
ULAW_CONTENT_TYPES = frozenset({"audio/basic", "audio/x-mulaw", "audio/mulaw", "audio/pcmu", "audio/x-ulaw"})


class AudioDecodeError(ValueError):
    """The bytes are not audio we can decode (maps to HTTP 415)."""


def decode_container(data: bytes) -> np.ndarray:
    """Decode a WAV/FLAC/OGG/MP3/WebM… file to mono float32 16 kHz, shape (n,).

    Raises:
        AudioDecodeError: neither libsndfile nor FFmpeg (PyAV) can decode it, or it is empty.
    """
    audio: np.ndarray | None = None
    try:
        audio, _ = read_audio(data, target_rate=SAMPLE_RATE_HZ)
    except Exception:  # libsndfile refuses: try FFmpeg (mp3 on old libsndfile, webm, m4a…)
        from faster_whisper.audio import decode_audio as ffmpeg_decode

        try:
            audio = np.asarray(ffmpeg_decode(io.BytesIO(data), sampling_rate=SAMPLE_RATE_HZ), dtype=np.float32)
        except Exception as exc:  # PyAV raises many types (InvalidDataError, ValueError…)
            raise AudioDecodeError(f"could not decode audio: {exc}") from exc
    if audio is None or audio.size == 0:
        raise AudioDecodeError("the audio decoded to zero samples")
    return np.ascontiguousarray(audio, dtype=np.float32)


def decode_pcm16(data: bytes, sample_rate: int) -> np.ndarray:
    """Raw PCM16 little-endian mono at ``sample_rate`` Hz → float32 16 kHz, shape (n,).

    Raises:
        AudioDecodeError: odd byte count (not 16-bit samples) or no samples.
    """
    if len(data) % 2:
        raise AudioDecodeError(f"PCM16 body has an odd number of bytes ({len(data)})")
    if not data:
        raise AudioDecodeError("the audio body is empty")
    pcm = np.frombuffer(data, dtype="<i2").astype(np.int16)
    return resample(pcm16_to_float(pcm), sample_rate, SAMPLE_RATE_HZ)


def decode_ulaw(data: bytes, sample_rate: int = TELEPHONY_RATE_HZ) -> np.ndarray:
    """Raw G.711 μ-law bytes at ``sample_rate`` Hz (8 kHz on phone lines) → float32 16 kHz (n,).

    Raises:
        AudioDecodeError: no samples.
    """
    if not data:
        raise AudioDecodeError("the audio body is empty")
    return resample(pcm16_to_float(ulaw_decode(data)), sample_rate, SAMPLE_RATE_HZ)


def decode_upload(
    data: bytes, content_type: str | None = None, fmt: str | None = None, sample_rate: int | None = None
) -> np.ndarray:
    """Decode an upload by its declared format.

    Args:
        data: the file's bytes.
        content_type: the part's or body's MIME type; ``audio/basic`` (and aliases) means raw μ-law.
        fmt: explicit format field: ``mulaw``/``ulaw``… or ``pcm16``/``s16le``…; else a container.
        sample_rate: rate of raw input in Hz (default 8000 for μ-law, 16000 for PCM16).
    Returns:
        float32 mono 16 kHz samples, shape (n,).
    Raises:
        AudioDecodeError: the bytes do not decode.
    """
    fmt = (fmt or "").lower().strip()
    ctype = (content_type or "").split(";")[0].strip().lower()
    if fmt in ULAW_FORMATS or (not fmt and ctype in ULAW_CONTENT_TYPES):
        return decode_ulaw(data, sample_rate or TELEPHONY_RATE_HZ)
    if fmt in PCM16_FORMATS or (not fmt and ctype in ("audio/l16", "audio/pcm")):
        return decode_pcm16(data, sample_rate or SAMPLE_RATE_HZ)
    return decode_container(data)
