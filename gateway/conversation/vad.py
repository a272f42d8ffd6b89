"""Streaming Silero VAD (v6 ONNX, the file faster-whisper ships) for 16 kHz PCM16.

Model and frame layout: https://github.com/snakers4/silero-vad — 512-sample frames at 16 kHz
(32 ms) with 64 samples of context from the previous frame and an LSTM state (h, c) carried
between frames; ``faster_whisper/vad.py`` runs the same file in batch. One ONNX session is shared
by all calls; each call owns a :class:`VADStream` with its own state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLE_RATE_HZ = 16000
FRAME_SAMPLES = 512
"""Samples per VAD frame at 16 kHz (32 ms)."""
FRAME_MS = FRAME_SAMPLES * 1000 // SAMPLE_RATE_HZ
CONTEXT_SAMPLES = 64
SILENT_PEAK = 4 / 32768
"""A frame whose every sample is within ±3 LSB (PCM16; below −80 dBFS) is digital silence: what a
line sends while the caller is muted or their phone suppresses noise (μ-law 0xFF), after the
resampler's rounding. Such a frame scores 0 without running the model."""


def default_model_path() -> Path:
    """``silero_vad_v6.onnx`` inside the installed faster-whisper package."""
    import faster_whisper

    return Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx"


class SileroVAD:
    """The shared ONNX session (1 intra-op thread: a frame takes well under 1 ms)."""

    def __init__(self, path: str | Path | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 4
        self.session = ort.InferenceSession(
            str(path or default_model_path()), sess_options=opts, providers=["CPUExecutionProvider"]
        )

    def stream(self) -> VADStream:
        """A new per-call stream with fresh state."""
        return VADStream(self)


class VADStream:
    """Per-call VAD state: feed PCM16 at 16 kHz in any chunk size, get one speech probability
    per completed 512-sample frame.

    Digital silence (see :data:`SILENT_PEAK`) is not fed to the model: after seconds of the ±1 LSB
    pattern that resampled μ-law silence becomes, the LSTM state drifts so that, at some frame
    phases, the onset of the next utterance scores 0.2-0.45 and its first words are lost ("He
    turned sharply..." heard as "and sharply..."; ``tests/unit/test_vad_silence.py``). Skipping
    those frames keeps the state where real audio left it, and saves the model call.
    """

    def __init__(self, vad: SileroVAD) -> None:
        self._session = vad.session
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def process(self, pcm16: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Add samples (int16, shape (n,), 16 kHz).

        Returns a list of ``(frame_pcm16 shape (512,), speech_probability in [0, 1])`` for each
        frame completed by this chunk (possibly empty).
        """
        audio = np.concatenate([self._pending, pcm16.astype(np.float32) / 32768.0])
        out: list[tuple[np.ndarray, float]] = []
        n = audio.size // FRAME_SAMPLES
        for i in range(n):
            frame = audio[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]
            prob = 0.0
            if np.abs(frame).max() >= SILENT_PEAK:  # digital silence is not fed to the model
                x = np.concatenate([self._context, frame])[None, :]
                result, self._h, self._c = self._session.run(None, {"input": x, "h": self._h, "c": self._c})
                prob = float(np.asarray(result).reshape(-1)[0])
            self._context = frame[-CONTEXT_SAMPLES:]
            out.append(((frame * 32768.0).astype(np.int16), prob))
        self._pending = audio[n * FRAME_SAMPLES :]
        return out
