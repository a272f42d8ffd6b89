"""A phone line as a real caller's sounds reach the gateway: speech, background noise, speakerphone echo.

:class:`PhoneLine` renders one 20 ms frame of what the caller's handset sends at a time: the
caller's speech (real or synthesised recordings at 8 kHz), background noise at a set SNR, and the
agent's own voice coming back from the handset's loudspeaker (speakerphone echo: delayed,
attenuated, coloured by a short room response), band-limited to the telephone band
(300–3400 Hz, as G.712) and G.711 μ-law encoded, as Twilio delivers it.

:class:`SimulatedCarrier` is Twilio's side of the outbound audio: it buffers the ``media`` the
gateway's real pacer (:class:`gateway.telephony.playback.Playback`) sends, plays it at real time
on the 20 ms media clock (the handset's loudspeaker, the echo's source), echoes each ``mark`` once
the audio before it has played, and on ``clear`` drops what it buffered and echoes the pending
marks at once (Twilio's documented behaviour).

Everything here is deterministic: noise comes from seeded generators.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from shared.audio import TELEPHONY_RATE_HZ, ulaw_decode, ulaw_encode

RATE_HZ = TELEPHONY_RATE_HZ
FRAME_SAMPLES = RATE_HZ // 50
"""One 20 ms frame at 8 kHz."""
SPEECH_DBFS = -20.0
"""Active speech level of the caller on the line (ITU-T P.56-style active level, dBFS)."""


def band_fir(low_hz: float = 300.0, high_hz: float = 3400.0, taps: int = 101) -> np.ndarray:
    """A linear-phase FIR band-pass for the telephone band (windowed sinc, Hamming), float64 (taps,).

    The difference of two low-pass sincs (cut-offs ``high_hz`` and ``low_hz``) at 8 kHz; delay
    ``(taps - 1) / 2`` samples.
    """
    n = np.arange(taps) - (taps - 1) / 2
    lp_high = 2 * high_hz / RATE_HZ * np.sinc(2 * high_hz / RATE_HZ * n)
    lp_low = 2 * low_hz / RATE_HZ * np.sinc(2 * low_hz / RATE_HZ * n)
    return (lp_high - lp_low) * np.hamming(taps)


def active_rms(audio: np.ndarray, frame: int = 160, floor_db: float = -40.0) -> float:
    """RMS of ``audio`` (float (n,)) over its 20 ms frames within 40 dB of the loudest (the speech)."""
    n = audio.size // frame
    if n == 0:
        return float(np.sqrt(np.mean(audio**2))) if audio.size else 0.0
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1))
    keep = rms > rms.max() * 10 ** (floor_db / 20)
    return float(np.sqrt(np.mean(rms[keep] ** 2))) if keep.any() else 0.0


def at_level(audio: np.ndarray, dbfs: float = SPEECH_DBFS) -> np.ndarray:
    """``audio`` (float) scaled so its active speech level is ``dbfs``."""
    level = active_rms(audio)
    return audio if level == 0 else audio * (10 ** (dbfs / 20) / level)


# ---- background noise --------------------------------------------------------------------------
def _lowpass_noise(rng: np.random.Generator, n: int, cutoff_hz: float) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE_HZ)
    spec[freqs > cutoff_hz] = 0
    return np.fft.irfft(spec, n)


def noise(kind: str, seconds: float, seed: int = 0) -> np.ndarray:
    """Synthetic background noise at 8 kHz, float (n,), unit RMS.

    Kinds: ``tap`` (running water: broadband hiss above ~1 kHz, slowly modulated), ``truck``
    (an idling diesel: 30 Hz firing harmonics up to ~700 Hz and low rumble, amplitude-modulated),
    ``kitchen`` (both, equal power), ``babble`` is not synthesised here (see ``run.py``).
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE_HZ)
    t = np.arange(n) / RATE_HZ
    if kind == "tap":
        spec = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1 / RATE_HZ)
        spec *= np.clip((freqs - 600) / 1400, 0, 1) * np.exp(-freqs / 6000)
        hiss = np.fft.irfft(spec, n)
        mod = 1 + 0.35 * _lowpass_noise(rng, n, 6) / (np.std(_lowpass_noise(rng, n, 6)) + 1e-9)
        out = hiss * np.clip(mod, 0.3, 2.0)
    elif kind == "truck":
        f0 = 30 + 2 * np.sin(2 * np.pi * 0.2 * t)
        phase = 2 * np.pi * np.cumsum(f0) / RATE_HZ
        harmonics = sum((1 / k) * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) for k in range(2, 24))
        rumble = _lowpass_noise(rng, n, 900)
        am = 1 + 0.3 * np.sin(2 * np.pi * 7.5 * t)
        out = (harmonics / np.std(harmonics) + 0.7 * rumble / np.std(rumble)) * am
    elif kind == "kitchen":
        a, b = noise("tap", seconds, seed), noise("truck", seconds, seed + 1)
        out = a + b
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    out = np.asarray(out, dtype=np.float64)
    return out / (np.sqrt(np.mean(out**2)) + 1e-12)


def noise_events(seconds: float, seed: int = 0, dbfs: float = -24.0) -> np.ndarray:
    """Non-speech sounds a caller makes in a noise-only turn, at 8 kHz, float (n,): a breath (at 1.0 s),
    a cough (2.6 s), a clatter of dishes (4.2 s), each at ``dbfs`` RMS. What makes VAD fire, and
    Whisper write "Thank you." on a turn with no words."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE_HZ)
    out = np.zeros(n)

    def place(at_s: float, sound: np.ndarray) -> None:
        start = int(at_s * RATE_HZ)
        if start < n:
            sound = sound / (np.sqrt(np.mean(sound**2)) + 1e-12) * 10 ** (dbfs / 20)
            out[start : start + sound.size] += sound[: n - start]

    def band(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        spec = np.fft.rfft(x)
        freqs = np.fft.rfftfreq(x.size, 1 / RATE_HZ)
        spec[(freqs < lo) | (freqs > hi)] = 0
        return np.fft.irfft(spec, x.size)

    m = int(0.45 * RATE_HZ)
    place(1.0, band(rng.standard_normal(m), 400, 2500) * np.hanning(m))  # a breath
    m = int(0.25 * RATE_HZ)
    attack = np.minimum(np.arange(m) / (0.01 * RATE_HZ), 1) * np.exp(-np.arange(m) / (0.08 * RATE_HZ))
    place(2.6, band(rng.standard_normal(m), 200, 1800) * attack)  # a cough
    m = int(0.3 * RATE_HZ)
    t = np.arange(m) / RATE_HZ
    clatter = sum(np.sin(2 * np.pi * f * t) * np.exp(-t / 0.05) for f in rng.uniform(1500, 3800, 6))
    place(4.2, np.asarray(clatter))  # dishes
    return out


# ---- the echo path -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Echo:
    """Speakerphone echo: the handset's loudspeaker heard by its own microphone.

    Attributes:
        delay_ms: from the loudspeaker playing a sample to it arriving in the caller's stream, ms
            (the acoustic path plus the network's round trip; 80–300 ms on real calls).
        level_db: echo level relative to the agent's audio as played, dB (−6 loud … −20 faint).
        seed: the room response's random tail.
    """

    delay_ms: int = 150
    level_db: float = -10.0
    seed: int = 7

    def response(self) -> np.ndarray:
        """The echo path's impulse response at 8 kHz, float64: telephone band-pass ⊛ a room
        response (direct sound, then a 60 ms exponentially decaying diffuse tail 8 dB below it),
        scaled so the echo's level is ``level_db`` (energy gain of the whole path); the delay is
        applied separately."""
        rng = np.random.default_rng(self.seed)
        tail_n = int(0.06 * RATE_HZ)
        tail = rng.standard_normal(tail_n) * np.exp(-np.arange(tail_n) / (0.015 * RATE_HZ))
        room = np.zeros(tail_n + 1)
        room[0] = 1.0
        room[1:] = tail / np.sqrt(np.sum(tail**2)) * 10 ** (-8 / 20)
        ir = np.convolve(room, band_fir())
        return ir / np.sqrt(np.sum(ir**2)) * 10 ** (self.level_db / 20)


@dataclass
class SimulatedCarrier:
    """Twilio's side of the outbound audio (see the module docstring). Driven by :meth:`tick`.

    Attributes:
        buffer: μ-law frames received and not yet played, with the reply they belong to (the
            pacer's frames carry no reply id on the wire; the transport passes it along).
        played: (tick, reply id) of every frame the loudspeaker played.
        clears: ticks at which a ``clear`` arrived.
    """

    buffer: deque[tuple[bytes, str] | str] = field(default_factory=deque)
    played: list[tuple[int, str]] = field(default_factory=list)
    clears: list[int] = field(default_factory=list)
    first_played: dict[str, int] = field(default_factory=dict)
    """Reply id → the tick its first frame played."""
    marks_out: list[str] = field(default_factory=list)
    """Marks whose audio has played (or was cleared): to be echoed to the gateway."""

    def media(self, payload: bytes, reply_id: str) -> None:
        """The gateway sent one 20 ms frame."""
        self.buffer.append((payload, reply_id))

    def mark(self, name: str) -> None:
        """The gateway sent a mark: echoed once the audio before it has played."""
        if not any(isinstance(item, tuple) for item in self.buffer):
            self.marks_out.append(name)
        else:
            self.buffer.append(name)

    def clear(self, tick: int) -> None:
        """Drop buffered audio; pending marks are echoed at once."""
        self.clears.append(tick)
        self.marks_out += [item for item in self.buffer if isinstance(item, str)]
        self.buffer.clear()

    def tick(self, tick: int) -> np.ndarray:
        """Play the frame due at media tick ``tick`` (20 ms); its PCM16 (160,) — zeros when idle."""
        while self.buffer and isinstance(self.buffer[0], str):
            self.marks_out.append(str(self.buffer.popleft()))
        if not self.buffer:
            return np.zeros(FRAME_SAMPLES, dtype=np.int16)
        item = self.buffer.popleft()
        assert isinstance(item, tuple)
        payload, reply_id = item
        self.played.append((tick, reply_id))
        self.first_played.setdefault(reply_id, tick)
        while self.buffer and isinstance(self.buffer[0], str):  # marks right behind it: played with it
            self.marks_out.append(str(self.buffer.popleft()))
        return ulaw_decode(payload)


class PhoneLine:
    """Renders the caller's side of one call, 20 ms at a time.

    Args:
        noise_audio: background noise at 8 kHz (float, unit RMS), looped; ``None`` for none.
        snr_db: speech-to-noise ratio against :data:`SPEECH_DBFS`.
        echo: the speakerphone echo, or ``None`` (a handset: no echo).
        line_noise_dbfs: the line's own hiss (always there).
    """

    def __init__(
        self,
        noise_audio: np.ndarray | None = None,
        snr_db: float | None = None,
        echo: Echo | None = None,
        line_noise_dbfs: float = -66.0,
        seed: int = 1,
    ) -> None:
        self._noise = noise_audio
        self._noise_gain = 0.0 if noise_audio is None or snr_db is None else 10 ** ((SPEECH_DBFS - snr_db) / 20)
        self._noise_pos = 0
        self.echo = echo
        self._ir = echo.response() if echo is not None else np.zeros(1)
        self._delay = int((echo.delay_ms if echo is not None else 0) * RATE_HZ / 1000)
        self._speaker = np.zeros(self._delay + self._ir.size - 1 + FRAME_SAMPLES)
        """Loudspeaker history (float), long enough for the delay and the response."""
        self._band = band_fir()
        self._mic_tail = np.zeros(self._band.size - 1)
        self._hiss = np.random.default_rng(seed)
        self._hiss_gain = 10 ** (line_noise_dbfs / 20)

    def frame(self, speech: np.ndarray, played_pcm16: np.ndarray) -> np.ndarray:
        """One 20 ms frame the caller's side sends: PCM16 (160,) after the μ-law round trip.

        Args:
            speech: the caller's speech in this frame, float (160,) at the line level.
            played_pcm16: what the loudspeaker plays in this frame (the agent's audio), int16 (160,).
        """
        mic = speech.astype(np.float64).copy()
        if self._noise is not None and self._noise_gain > 0:
            idx = (self._noise_pos + np.arange(FRAME_SAMPLES)) % self._noise.size
            mic += self._noise[idx] * self._noise_gain
            self._noise_pos = (self._noise_pos + FRAME_SAMPLES) % self._noise.size
        if self.echo is not None:
            keep = self._delay + self._ir.size - 1 + FRAME_SAMPLES
            self._speaker = np.concatenate([self._speaker, played_pcm16.astype(np.float64) / 32768.0])[-keep:]
            end = self._speaker.size - self._delay  # sample n of this frame hears speaker[n - delay - k]
            mic += np.convolve(self._speaker[end - FRAME_SAMPLES - self._ir.size + 1 : end], self._ir, mode="valid")
        mic += self._hiss.standard_normal(FRAME_SAMPLES) * self._hiss_gain
        banded = np.convolve(np.concatenate([self._mic_tail, mic]), self._band, mode="valid")
        self._mic_tail = np.concatenate([self._mic_tail, mic])[-(self._band.size - 1) :]
        pcm = np.clip(np.round(banded * 32768.0), -32768, 32767).astype(np.int16)
        return ulaw_decode(ulaw_encode(pcm))
