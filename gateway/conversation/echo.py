"""The echo gate: tells the caller's speech from the agent's own voice coming back down the line.

On a speakerphone the agent's audio leaves the handset's loudspeaker and re-enters its microphone
80–300 ms later, 6–20 dB quieter, band-limited and μ-law coded again; VAD hears it as speech, so
without a gate the agent pauses, or interrupts itself, at its own words. Nothing in the phone
network removes it (carriers' echo cancellers target the 2-to-4-wire hybrid's few-ms echo, not
acoustic echo of a speakerphone).

:class:`EchoGate` is an echo-aware barge-in gate rather than a sample-level canceller: a carrier
delivers the caller's frames with network jitter, and a linear canceller (NLMS, Speex MDF, WebRTC
AEC3) needs sample-exact alignment between what was played and what was heard. Energy envelopes
tolerate a few ms of misalignment:

* the **reference** is what the gateway played, placed at the loop time each frame is due to play at
  the caller's side (:meth:`~gateway.conversation.transport.PlayoutHooks.on_frame_sent`), as the
  energy of 10 ms bins;
* the **inbound** audio is placed on the same clock by the stream time of its samples and the
  earliest arrival seen (the arrival with the least network delay);
* every 0.5 s of agent speech the echo path's **delay** is estimated as the lag (0–600 ms) that
  maximises the normalised cross-correlation of the two envelopes (log energies) over the last 4 s
  (the envelope-correlation delay estimate of the WebRTC/Speex delay estimators, cf. WebRTC's
  ``DelayEstimator``, Speex ``speex_echo_state``'s far-end alignment), and the path's **energy
  response** around that delay (−20…+80 ms: the room's reverberation) by least squares of the
  inbound envelope on the lagged reference envelopes, refitted without the bins the caller talks
  over (an energy-domain echo model, as residual-echo estimators of AECs use);
* a VAD frame is **echo** when its inbound energy is no more than ``margin_db`` above the echo
  predicted for it (the response applied to the reference, the largest with ±10 ms of jitter); its speech
  probability is then ignored. A caller speaking over the echo at a normal level is ``10–20 dB``
  above it and passes.

Before a delay is known (the first ~1.5 s of agent speech) a conservative prior is used: the echo
may be anywhere in the lag range at ``prior_gain_db``. Once the agent has spoken
``no_echo_after_s`` with no correlation (a handset, no echo) the gate stops gating.
Pure numpy; one instance per call; costs a few µs per 20 ms.
"""

from __future__ import annotations

import numpy as np

BIN_S = 0.01
"""Envelope resolution: 10 ms."""
SPREAD_BEFORE, SPREAD_AFTER = 2, 8
"""The echo path's energy response is fitted from 20 ms before to 80 ms after the estimated delay:
the room's reverberation carries a sound on after it."""
DOUBLE_TALK_SHARE = 0.2
"""When more than this share of the window's echo bins are 6 dB louder than the echo predicted, the
caller is talking over it: the estimate is kept, not refitted."""
MOVE_CORR, MOVE_MARGIN = 0.75, 0.15
"""A known delay moves to another lag only when that lag correlates at least this well, and this much
better than the known one."""
JITTER = np.array([-1, 0, 1])
"""The echo predicted for a bin is the largest with the reference shifted by up to ±10 ms (jitter)."""


class EchoGate:
    """One call's echo gate (see the module docstring).

    Args:
        rate_hz: sample rate of both the reference and the inbound audio (8000 on Twilio).
        max_lag_ms: the longest echo delay searched, ms.
        margin_db: how far above the predicted echo inbound audio must be to count as the caller.
        window_s: how much recent audio the delay estimate uses, s.
        min_corr: the least envelope correlation that counts as an echo path.
        prior_gain_db: the echo level assumed before an estimate exists (the loudest speakerphone).
        no_echo_after_s: agent speech after which, with no correlation found, the line has no echo.
    """

    def __init__(
        self,
        rate_hz: int = 8000,
        max_lag_ms: int = 600,
        margin_db: float = 6.0,
        window_s: float = 4.0,
        min_corr: float = 0.5,
        prior_gain_db: float = -3.0,
        no_echo_after_s: float = 4.0,
    ) -> None:
        self.rate_hz = rate_hz
        self.bin_samples = int(rate_hz * BIN_S)
        self.max_lag = int(max_lag_ms / 1000 / BIN_S)
        self.margin = 10 ** (margin_db / 10)
        self.window = int(window_s / BIN_S)
        self.min_corr = min_corr
        self.prior_gain = 10 ** (prior_gain_db / 10)
        self.no_echo_bins = int(no_echo_after_s / BIN_S)
        self.size = self.window + self.max_lag + 64
        """Ring length, bins (absolute bin index modulo it)."""
        self._ref = np.zeros(self.size)
        self._ref_at = np.full(self.size, -1, dtype=np.int64)
        self._in = np.zeros(self.size)
        self._in_at = np.full(self.size, -1, dtype=np.int64)
        self._ref_tail = np.zeros(0, dtype=np.float64)
        self._ref_tail_bin = -1
        self._base: float | None = None
        """Loop time of inbound stream sample 0 (arrival minus stream time, its minimum so far)."""
        self._in_samples = 0
        self._in_partial = np.zeros(0, dtype=np.float64)
        self.delay_bins: int | None = None
        self.gain = self.prior_gain
        self.path_lags = np.zeros(1, dtype=np.int64)
        self.path = np.zeros(1)
        """The echo path's energy response: ``path[i]`` at lag ``path_lags[i]`` bins (after the first estimate)."""
        self.correlation = 0.0
        self._active_ref_bins = 0
        self._next_estimate = 0
        self.no_echo = False
        """The agent has spoken long enough with no echo found: the gate is off."""

    # ---- feeding ---------------------------------------------------------------------------
    def played(self, pcm16: np.ndarray, at: float) -> None:
        """The agent's audio ``pcm16`` (int16 (n,) at ``rate_hz``) starts playing at loop time ``at``."""
        first = round(at / BIN_S * self.bin_samples)  # absolute sample index on the loop clock
        x = pcm16.astype(np.float64) / 32768.0
        start_bin = first // self.bin_samples
        offset = first - start_bin * self.bin_samples
        if self._ref_tail_bin == start_bin and self._ref_tail.size == offset:
            x = np.concatenate([self._ref_tail, x])
        else:
            x = np.concatenate([np.zeros(offset), x])
        n = x.size // self.bin_samples
        if n:
            energy = np.mean(x[: n * self.bin_samples].reshape(n, -1) ** 2, axis=1)
            for i, e in enumerate(energy):
                b = start_bin + i
                self._ref[b % self.size] = e
                self._ref_at[b % self.size] = b
                self._active_ref_bins += e > 1e-6
        self._ref_tail = x[n * self.bin_samples :]
        self._ref_tail_bin = start_bin + n

    def heard(self, pcm16: np.ndarray, arrived: float) -> None:
        """Caller audio ``pcm16`` (int16 (n,) at ``rate_hz``): the stream's next samples, arrived at ``arrived``."""
        self._in_samples += pcm16.size
        base = arrived - self._in_samples / self.rate_hz
        if self._base is None or base < self._base:
            self._base = base
        x = np.concatenate([self._in_partial, pcm16.astype(np.float64) / 32768.0])
        first = self._in_samples - x.size  # stream sample index of x[0], a bin boundary
        n = x.size // self.bin_samples
        if n:
            energy = np.mean(x[: n * self.bin_samples].reshape(n, -1) ** 2, axis=1)
            for i, e in enumerate(energy):
                b = first // self.bin_samples + i
                self._in[b % self.size] = e
                self._in_at[b % self.size] = b
        self._in_partial = x[n * self.bin_samples :]
        last = (self._in_samples // self.bin_samples) - 1
        if last >= self._next_estimate and self._active_ref_bins > 50:
            self._next_estimate = last + 50
            self._estimate(last)

    # ---- the echo path ---------------------------------------------------------------------
    def _ref_bin(self, stream_bin: int) -> int:
        """The reference bin playing when inbound stream bin ``stream_bin`` was captured (lag 0)."""
        assert self._base is not None
        return round(self._base / BIN_S) + stream_bin

    def _ref_energy(self, bins: np.ndarray) -> np.ndarray:
        idx = bins % self.size
        return np.where(self._ref_at[idx] == bins, self._ref[idx], 0.0)

    def _estimate(self, last: int) -> None:
        """Re-estimate delay and gain from the last ``window_s`` of both envelopes."""
        stream_bins = np.arange(max(0, last - self.window + 1), last + 1)
        idx = stream_bins % self.size
        inbound = np.where(self._in_at[idx] == stream_bins, self._in[idx], 0.0)
        ref0 = self._ref_bin(0)
        lags = np.arange(self.max_lag + 1)
        refs = self._ref_energy((ref0 + stream_bins)[None, :] - lags[:, None])  # (lags, bins)
        active = refs.max(axis=0) > 1e-6
        if active.sum() < 100:
            return
        echo_like = active
        if self.delay_bins is not None:  # the caller talking over the echo: keep the estimate we have
            x_now = refs[np.clip(self.path_lags, 0, self.max_lag)].T @ self.path
            loud = active & (x_now > 1e-7)
            talk = inbound > 4 * x_now
            if loud.sum() >= 20 and np.mean(talk[loud]) > DOUBLE_TALK_SHARE:
                return
            echo_like = active & ~talk
        y = np.log10(inbound + 1e-9)
        x = np.log10(refs + 1e-9)
        yc = y - y.mean()
        xc = x - x.mean(axis=1, keepdims=True)
        corr = (xc @ yc) / (np.sqrt((xc**2).sum(axis=1) * (yc**2).sum()) + 1e-12)
        best = int(np.argmax(corr))
        if self.delay_bins is not None and best != self.delay_bins:
            # Turn-taking correlates too (the caller starts as the agent stops): the delay only moves
            # to a clearly better lag.
            if corr[best] < max(MOVE_CORR, corr[self.delay_bins] + MOVE_MARGIN):
                best = self.delay_bins
        self.correlation = float(corr[best])
        if self.correlation >= self.min_corr:
            if self._fit_path(refs, inbound, best, echo_like):
                self.delay_bins = best
                self.no_echo = False
        elif self.delay_bins is None and self._active_ref_bins >= self.no_echo_bins:
            self.no_echo = True

    def _fit_path(self, refs: np.ndarray, inbound: np.ndarray, best: int, echo_like: np.ndarray) -> bool:
        """Fit the echo path's energy response around the delay: inbound ≈ Σ_k h_k · ref(lag_k) + floor,
        least squares over the window's ``echo_like`` bins (not under-predicted fourfold by the last
        estimate: the caller talking over it), refitted once without the bins this fit under-predicts
        fourfold, negative taps clipped."""
        lags = np.arange(max(best - SPREAD_BEFORE, 0), min(best + SPREAD_AFTER, self.max_lag) + 1)
        x = np.column_stack([refs[lags].T, np.ones(refs.shape[1])])
        active = refs[best] > 1e-6
        keep = active & echo_like
        h = np.zeros(lags.size + 1)
        for _ in range(2):
            if keep.sum() < 50:
                return False
            h = np.clip(np.linalg.lstsq(x[keep], inbound[keep], rcond=None)[0], 0, None)
            keep = active & (inbound <= 4 * (x @ h) + 1e-9)
        self.path_lags, self.path = lags, h[:-1]
        self.gain = float(self.path.sum())
        return True

    # ---- the decision --------------------------------------------------------------------------
    def predicted(self, start_ms: int, end_ms: int) -> float:
        """Echo energy (mean square) predicted for inbound stream time ``[start_ms, end_ms)``."""
        if self._base is None:
            return 0.0
        bins = np.arange(start_ms // 10, max(end_ms // 10, start_ms // 10 + 1))
        ref0 = self._ref_bin(0)
        if self.delay_bins is None:
            lags = np.arange(self.max_lag + 1)
            spread = self._ref_energy((ref0 + bins)[None, :] - lags[:, None]).max(axis=0)
            return float(self.prior_gain * spread.mean())
        shifted = (ref0 + bins)[None, None, :] + JITTER[:, None, None] - self.path_lags[None, :, None]
        echo = np.einsum("k,jkb->jb", self.path, self._ref_energy(shifted))  # (jitter, bins)
        return float(echo.max(axis=0).mean())

    def is_echo(self, frame_pcm16: np.ndarray, start_ms: int, end_ms: int) -> bool:
        """Whether the caller audio ``frame_pcm16`` (int16, any rate) at stream time ``[start_ms, end_ms)``
        is explained by the agent's echo (its speech probability should then be ignored)."""
        if self.no_echo:
            return False
        echo = self.predicted(start_ms, end_ms)
        if echo <= 0.0:
            return False
        energy = float(np.mean((frame_pcm16.astype(np.float64) / 32768.0) ** 2)) if frame_pcm16.size else 0.0
        return energy <= self.margin * echo
