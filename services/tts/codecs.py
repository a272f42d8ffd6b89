"""Output encodings of synthesised audio: raw PCM16, G.711 μ-law, WAV, MP3, Ogg/Opus, FLAC.

Kokoro produces float32 mono at 24 kHz. Every format here is mono; rates are 8000, 16000 or 24000 Hz.

* ``pcm`` — raw PCM16 little-endian, no header (OpenAI's ``pcm``; our gateway's default, 24 kHz).
* ``mulaw`` — raw G.711 μ-law bytes, no header: at 8000 Hz exactly the payload Twilio Media
  Streams carry (base64 it into ``media.payload``; 160 bytes = one 20 ms frame). Encoder:
  :func:`shared.audio.ulaw_encode` (bit-exact with ``audioop.lin2ulaw``).
* ``wav`` — 16-bit PCM WAV. Streamed WAV uses the size ``0xFFFFFFFF`` in its RIFF and data headers
  (length unknown when the header is sent), as OpenAI's streamed WAV does; players and soundfile
  read it to the end of the data.
* ``mp3`` / ``opus`` (Ogg container) / ``flac`` — encoded with libsndfile through ``soundfile``
  (libsndfile ≥ 1.1 has LAME/mpg123 and libopus); these need the whole signal, so they are sent in
  one piece after synthesis.

Resampling uses :func:`shared.audio.resample` (soxr HQ); each segment is resampled on its own,
which is exact because segments are separated by trimmed silence.
"""

from __future__ import annotations

import io
import struct
from enum import StrEnum

import numpy as np
import soundfile as sf

from shared.audio import float_to_pcm16, resample, ulaw_encode

__all__ = ["MEDIA_TYPES", "STREAMABLE", "AudioFormat", "encode_chunk", "encode_whole", "streaming_wav_header"]

MODEL_RATE_HZ = 24000


class AudioFormat(StrEnum):
    """``response_format`` values of ``POST /v1/audio/speech`` (OpenAI's, plus ``mulaw``)."""

    wav = "wav"
    pcm = "pcm"
    mulaw = "mulaw"
    mp3 = "mp3"
    opus = "opus"
    flac = "flac"


MEDIA_TYPES = {
    AudioFormat.wav: "audio/wav",
    AudioFormat.pcm: "audio/pcm",
    AudioFormat.mulaw: "audio/basic",
    AudioFormat.mp3: "audio/mpeg",
    AudioFormat.opus: "audio/ogg",
    AudioFormat.flac: "audio/flac",
}
STREAMABLE = frozenset({AudioFormat.pcm, AudioFormat.mulaw, AudioFormat.wav})
"""Formats sent sentence by sentence as they are synthesised; the others are sent whole."""

_SF_FORMATS = {
    AudioFormat.mp3: ("MP3", "MPEG_LAYER_III"),
    AudioFormat.opus: ("OGG", "OPUS"),
    AudioFormat.flac: ("FLAC", "PCM_16"),
}


def to_rate(audio: np.ndarray, rate: int) -> np.ndarray:
    """float32 (n,) at 24 kHz → float32 (≈ n·rate/24000,) at ``rate`` Hz (soxr HQ)."""
    return resample(audio.astype(np.float32, copy=False), MODEL_RATE_HZ, rate)


def encode_chunk(audio: np.ndarray, fmt: AudioFormat, rate: int) -> bytes:
    """Encode one segment for a streamed response (headerless).

    Args:
        audio: float32 (n,) at 24 kHz in [-1, 1].
        fmt: ``pcm``, ``mulaw`` or ``wav`` (for ``wav`` only the sample bytes; send
            :func:`streaming_wav_header` first).
        rate: output rate in Hz.
    Returns:
        PCM16 LE bytes (2 per sample) or μ-law bytes (1 per sample).
    Raises:
        ValueError: ``fmt`` is not streamable.
    """
    pcm = float_to_pcm16(to_rate(audio, rate))
    if fmt in (AudioFormat.pcm, AudioFormat.wav):
        return pcm.astype("<i2").tobytes()
    if fmt is AudioFormat.mulaw:
        return ulaw_encode(pcm)
    raise ValueError(f"{fmt.value} cannot be streamed")


def streaming_wav_header(rate: int) -> bytes:
    """44-byte RIFF/WAVE header for PCM16 mono at ``rate`` Hz with unknown length (0xFFFFFFFF sizes)."""
    unknown = 0xFFFFFFFF
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", unknown)
    )


def encode_whole(audio: np.ndarray, fmt: AudioFormat, rate: int) -> bytes:
    """Encode a whole signal as a complete file (or raw stream for ``pcm``/``mulaw``).

    Args:
        audio: float32 (n,) at 24 kHz in [-1, 1].
        fmt: any :class:`AudioFormat`.
        rate: output rate in Hz (8000, 16000 or 24000).
    Returns:
        The encoded bytes.
    Raises:
        soundfile.LibsndfileError: libsndfile cannot write ``fmt`` (e.g. built without LAME).
    """
    if fmt in (AudioFormat.pcm, AudioFormat.mulaw):
        return encode_chunk(audio, fmt, rate)
    pcm = float_to_pcm16(to_rate(audio, rate))
    buf = io.BytesIO()
    if fmt is AudioFormat.wav:
        sf.write(buf, pcm, rate, subtype="PCM_16", format="WAV")
    else:
        container, subtype = _SF_FORMATS[fmt]
        sf.write(buf, pcm, rate, format=container, subtype=subtype)
    return buf.getvalue()


def frame_align(audio: np.ndarray, frame_ms: int = 20) -> np.ndarray:
    """Pad float32 (n,) 24 kHz audio with zeros to a whole number of ``frame_ms`` frames.

    At every output rate (8/16/24 kHz) a 20 ms frame of the 24 kHz signal is a whole number of
    samples (160/320/480), so aligned segments stay aligned after resampling, give or take the
    resampler's rounding of at most one sample, which :func:`pad_bytes` absorbs.
    """
    step = MODEL_RATE_HZ * frame_ms // 1000
    rem = (-audio.size) % step
    return np.concatenate([audio, np.zeros(rem, dtype=np.float32)]) if rem else audio


def pad_bytes(data: bytes, fmt: AudioFormat, rate: int, frame_ms: int = 20) -> bytes:
    """Pad/trim encoded ``pcm``/``mulaw`` bytes to a whole number of ``frame_ms`` frames with silence."""
    width = 1 if fmt is AudioFormat.mulaw else 2
    frame = rate * frame_ms // 1000 * width
    rem = len(data) % frame
    if rem == 0:
        return data
    if rem <= width:  # resampler rounding: drop the odd sample
        return data[: len(data) - rem]
    silence = b"\xff" if fmt is AudioFormat.mulaw else b"\x00"
    return data + silence * (frame - rem)
