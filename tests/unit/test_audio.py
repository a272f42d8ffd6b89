"""μ-law and resampling: bit-exact against CPython's audioop (the G.711 reference code)."""

import warnings

import numpy as np
import pytest

from shared.audio import (
    Resampler,
    read_audio,
    resample,
    split_frames,
    ulaw_decode,
    ulaw_encode,
    wav_bytes,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop


def test_ulaw_encode_matches_audioop_for_all_65536_values():
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    assert ulaw_encode(pcm) == audioop.lin2ulaw(pcm.tobytes(), 2)


def test_ulaw_decode_matches_audioop_for_all_256_codes():
    codes = bytes(range(256))
    expected = np.frombuffer(audioop.ulaw2lin(codes, 2), dtype=np.int16)
    np.testing.assert_array_equal(ulaw_decode(codes), expected)


def test_ulaw_round_trip_error_is_within_g711_step():
    pcm = np.arange(-32768, 32768, 7, dtype=np.int16)
    back = ulaw_decode(ulaw_encode(pcm)).astype(np.int32)
    err = np.abs(back - pcm.astype(np.int32))
    # G.711 μ-law step is at most 1024 in the top segment (error ≤ half a step + bias effects)
    assert err.max() <= 1024
    small = np.abs(pcm.astype(np.int32)) < 100
    assert err[small].max() < 8  # first segment: step 8 in 16-bit units, truncating encoder


def test_ulaw_encode_rejects_float():
    with pytest.raises(TypeError):
        ulaw_encode(np.zeros(4, dtype=np.float32))


def _tone(freq: float, rate: int, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[np.argmax(spec)])


@pytest.mark.parametrize(("src", "dst"), [(8000, 16000), (24000, 8000), (16000, 8000)])
def test_resample_keeps_frequency_and_duration(src, dst):
    tone = _tone(440.0, src)
    out = resample(tone, src, dst)
    assert out.dtype == np.int16
    assert abs(out.size - tone.size * dst / src) <= 2
    assert abs(_peak_hz(out, dst) - 440.0) < 5


def test_downsampling_removes_content_above_new_nyquist():
    tone = _tone(6000.0, 24000)  # above 4 kHz: must not alias into the 8 kHz signal
    out = resample(tone, 24000, 8000)
    assert np.sqrt(np.mean(out.astype(np.float64) ** 2)) < 0.01 * 32767


def test_streaming_resampler_matches_one_shot():
    tone = _tone(300.0, 8000, seconds=1.0)
    rs = Resampler(8000, 16000)
    chunks = [rs.process(tone[i : i + 160]) for i in range(0, tone.size, 160)]
    streamed = np.concatenate([*chunks, rs.flush()])
    one_shot = resample(tone, 8000, 16000)
    assert abs(streamed.size - one_shot.size) <= 2
    n = min(streamed.size, one_shot.size)
    # Same filter: interior samples agree closely.
    diff = np.abs(streamed[100 : n - 100].astype(np.int32) - one_shot[100 : n - 100].astype(np.int32))
    assert diff.max() < 200


def test_resampler_rejects_wrong_dtype():
    with pytest.raises(TypeError):
        Resampler(8000, 16000).process(np.zeros(10, dtype=np.float32))


def test_split_frames_pads_with_ulaw_silence():
    frames = split_frames(b"\x00" * 170)
    assert [len(f) for f in frames] == [160, 160]
    assert frames[1][10:] == b"\xff" * 150


def test_wav_round_trip():
    tone = _tone(440.0, 16000)
    audio, rate = read_audio(wav_bytes(tone, 16000))
    assert rate == 16000
    np.testing.assert_allclose(audio * 32768, tone, atol=2)
