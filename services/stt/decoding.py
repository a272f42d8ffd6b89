"""Turn uploaded bytes into Whisper's input: mono float32 at 16 kHz, never more than a given duration.

Containers (WAV, FLAC, OGG) are read with libsndfile (``soundfile``) and everything else FFmpeg
knows (MP3, WebM/Opus, M4A…) through PyAV, both block by block: decoding stops as soon as the
audio exceeds ``max_seconds`` (:class:`AudioTooLongError`), so a small upload that holds hours of
well-compressed audio is refused after ``max_seconds`` worth of work and memory, not after
decoding all of it. Raw telephony audio is G.711 μ-law (``shared.audio.ulaw_decode``) or PCM16
little-endian, whose duration follows from the byte count; raw input at other rates is resampled
with soxr (``shared.audio.resample``).
"""

from __future__ import annotations

import gc
import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import soundfile as sf

from shared.audio import TELEPHONY_RATE_HZ, pcm16_to_float, resample, ulaw_decode

SAMPLE_RATE_HZ = 16000
"""Whisper's input rate."""
ULAW_FORMATS = frozenset({"mulaw", "ulaw", "mu-law", "pcmu", "g711_ulaw", "basic"})
PCM16_FORMATS = frozenset({"pcm16", "pcm", "s16le", "l16", "linear16"})
CONTAINER_FORMATS = frozenset(
    {"wav", "wave", "flac", "ogg", "oga", "opus", "mp3", "mpeg", "mpga", "m4a", "mp4", "aac", "webm", "weba"}
)
"""``format`` values that name a container; the bytes are probed, so any of them means "a file"."""
FORMATS = ULAW_FORMATS | PCM16_FORMATS | CONTAINER_FORMATS
"""Every accepted ``format`` value (lower case)."""
ULAW_CONTENT_TYPES = frozenset({"audio/basic", "audio/x-mulaw", "audio/mulaw", "audio/pcmu", "audio/x-ulaw"})
_BLOCK_SECONDS = 5.0
"""Decode granularity: how far past ``max_seconds`` decoding may run before it stops."""


class AudioDecodeError(ValueError):
    """The bytes are not audio we can decode (maps to HTTP 415)."""


class AudioTooLongError(ValueError):
    """The audio lasts longer than allowed (maps to HTTP 413); decoding stopped there.

    Attributes:
        seconds: how much audio was found before stopping (more than ``limit_s``), s.
        limit_s: the allowed duration, s.
    """

    def __init__(self, seconds: float, limit_s: float) -> None:
        super().__init__(f"audio is longer than the {limit_s:.0f}s limit (decoding stopped at {seconds:.1f}s)")
        self.seconds = seconds
        self.limit_s = limit_s


def decode_container(data: bytes, max_seconds: float | None = None) -> np.ndarray:
    """Decode a WAV/FLAC/OGG/MP3/WebM… file to mono float32 16 kHz, shape (n,).

    Args:
        data: the file's bytes.
        max_seconds: stop and refuse once the audio exceeds this duration (``None``: no bound).
    Raises:
        AudioTooLongError: the audio is longer than ``max_seconds`` (found while decoding).
        AudioDecodeError: neither libsndfile nor FFmpeg (PyAV) can decode it, or it is empty.
    """
    try:
        audio = _decode_sndfile(data, max_seconds)
    except AudioTooLongError:
        raise
    except Exception:  # libsndfile refuses: try FFmpeg (mp3 on old libsndfile, webm, m4a…)
        try:
            audio = _decode_av(data, max_seconds)
        except AudioTooLongError:
            raise
        except Exception as exc:  # PyAV raises many types (InvalidDataError, ValueError…)
            raise AudioDecodeError(f"could not decode audio: {exc}") from exc
    if audio.size == 0:
        raise AudioDecodeError("the audio decoded to zero samples")
    return np.ascontiguousarray(audio, dtype=np.float32)


def _decode_sndfile(data: bytes, max_seconds: float | None) -> np.ndarray:
    """libsndfile, ``_BLOCK_SECONDS`` at a time, channels averaged; raises on an unreadable file."""
    with sf.SoundFile(io.BytesIO(data)) as f:
        rate = int(f.samplerate)
        limit = None if max_seconds is None else int(max_seconds * rate)
        parts: list[np.ndarray] = []
        frames = 0
        for block in f.blocks(blocksize=max(1, int(_BLOCK_SECONDS * rate)), dtype="float32", always_2d=True):
            frames += block.shape[0]
            if limit is not None and frames > limit:
                raise AudioTooLongError(frames / rate, float(max_seconds or 0.0))
            parts.append(block.mean(axis=1, dtype=np.float32))
    mono = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return resample(mono, rate, SAMPLE_RATE_HZ) if rate != SAMPLE_RATE_HZ else mono


def _decode_av(data: bytes, max_seconds: float | None) -> np.ndarray:
    """FFmpeg through PyAV, frame by frame, resampled to mono float32 16 kHz as it goes."""
    import av

    limit = None if max_seconds is None else int(max_seconds * SAMPLE_RATE_HZ)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE_HZ)
    parts: list[np.ndarray] = []
    samples = 0
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioDecodeError("the file has no audio stream")
            for frame in _valid_frames(container.decode(container.streams.audio[0])):
                frame.pts = None  # the resampler checks timestamps; broken files have odd ones
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    samples += chunk.size
                    if limit is not None and samples > limit:
                        raise AudioTooLongError(samples / SAMPLE_RATE_HZ, float(max_seconds or 0.0))
                    parts.append(chunk)
            parts.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    finally:
        del resampler
        gc.collect()  # PyAV's resampler holds native buffers until collected (faster-whisper #390)
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, dtype=np.float32)


def _valid_frames(frames: Iterator[Any]) -> Iterator[Any]:
    """Skip frames FFmpeg cannot decode (as faster-whisper's ``decode_audio`` does)."""
    import av

    while True:
        try:
            yield next(frames)
        except StopIteration:
            return
        except av.error.InvalidDataError:
            continue


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
    data: bytes,
    content_type: str | None = None,
    fmt: str | None = None,
    sample_rate: int | None = None,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Decode an upload by its declared format, never past ``max_seconds`` of audio.

    Args:
        data: the file's bytes.
        content_type: the part's or body's MIME type; ``audio/basic`` (and aliases) means raw μ-law.
        fmt: explicit format field: ``mulaw``/``ulaw``… or ``pcm16``/``s16le``…; else a container.
        sample_rate: rate of raw input in Hz (default 8000 for μ-law, 16000 for PCM16).
        max_seconds: longest audio accepted, s (``None``: no bound). Raw input is measured by its
            byte count before decoding, containers while decoding.
    Returns:
        float32 mono 16 kHz samples, shape (n,).
    Raises:
        AudioTooLongError: the audio is longer than ``max_seconds``.
        AudioDecodeError: the bytes do not decode.
    """
    fmt = (fmt or "").lower().strip()
    ctype = (content_type or "").split(";")[0].strip().lower()
    if fmt in ULAW_FORMATS or (not fmt and ctype in ULAW_CONTENT_TYPES):
        rate = sample_rate or TELEPHONY_RATE_HZ
        _check_raw_length(len(data) / rate, max_seconds)
        return decode_ulaw(data, rate)
    if fmt in PCM16_FORMATS or (not fmt and ctype in ("audio/l16", "audio/pcm")):
        rate = sample_rate or SAMPLE_RATE_HZ
        _check_raw_length(len(data) / 2 / rate, max_seconds)
        return decode_pcm16(data, rate)
    return decode_container(data, max_seconds)


def _check_raw_length(seconds: float, max_seconds: float | None) -> None:
    if max_seconds is not None and seconds > max_seconds:
        raise AudioTooLongError(seconds, max_seconds)
