"""Streaming Silero VAD (v6 ONNX, the file faster-whisper ships) for 16 kHz PCM16, batched across calls.

Model and frame layout: https://github.com/snakers4/silero-vad — 512-sample frames at 16 kHz
(32 ms) with 64 samples of context from the previous frame and an LSTM state (h, c) carried
between frames. One ONNX session is shared by all calls; each call owns a :class:`VADStream`
with its own state, and a :class:`~gateway.conversation.vad_batch.VADBatcher` scores the frames
that all calls complete within ``GATEWAY_VAD_BATCH_WAIT_MS`` in one ONNX run.

The shipped graph does not take a batch: ``faster_whisper/vad.py`` runs one *sequence* of frames
of one stream (``input`` (seq, 576), ``h``/``c`` (1, 1, 128) carried through the sequence). Its
encoder is per row, so :func:`batched_graph` turns the one ``Transpose`` in front of the LSTM
from ``(seq, 128, 1) → (seq, 1, 128)`` (time-major) into ``→ (1, batch, 128)``: the same weights
then score ``input`` (B, 576) with ``h``/``c`` (1, B, 128), one step per stream, each with its
own state — bit-identical to B separate runs (``tests/unit/test_vad_batch.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gateway.conversation.vad_batch import VADBatcher

SAMPLE_RATE_HZ = 16000
FRAME_SAMPLES = 512
"""Samples per VAD frame at 16 kHz (32 ms)."""
FRAME_MS = FRAME_SAMPLES * 1000 // SAMPLE_RATE_HZ
CONTEXT_SAMPLES = 64
SILENT_PEAK = 4 / 32768
"""A frame whose every sample is within ±3 LSB (PCM16; below −80 dBFS) is digital silence: what a
line sends while the caller is muted or their phone suppresses noise (μ-law 0xFF), after the
resampler's rounding. Such a frame scores 0 without running the model."""
_SILENT_LSB = 4
_SCALE = np.float32(1 / 32768)


def default_model_path() -> Path:
    """``silero_vad_v6.onnx`` inside the installed faster-whisper package."""
    import faster_whisper

    return Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx"


def batched_graph(path: str | Path) -> bytes:
    """The v6 graph at ``path`` rewritten to take a batch of streams (see the module doc), serialised.

    Raises:
        ValueError: the file is not the graph this expects (no time-major ``/Transpose`` before the LSTM).
    """
    import onnx

    model = onnx.load(str(path))
    transposes = [n for n in model.graph.node if n.name == "/Transpose" and n.op_type == "Transpose"]
    if len(transposes) != 1 or list(transposes[0].attribute[0].ints) != [0, 2, 1]:
        raise ValueError(f"{path}: not the Silero v6 graph faster-whisper ships (no time-major /Transpose)")
    transposes[0].attribute[0].ints[:] = [2, 0, 1]  # (B, 128, 1) → (1, B, 128): one LSTM step, batch B
    for value in [*model.graph.input, *model.graph.output]:
        if value.name in ("h", "c", "hn", "cn"):
            dim = value.type.tensor_type.shape.dim[1]
            dim.Clear()
            dim.dim_param = "batch"
    return bytes(model.SerializeToString())


class SileroVAD:
    """The shared ONNX session (1 intra-op thread) and the process's batcher.

    Args:
        path: the v6 ONNX file (default :func:`default_model_path`).
        batch_wait_ms: how long a completed frame waits for other calls' frames before the batch
            runs (``GATEWAY_VAD_BATCH_WAIT_MS``); 0: every frame runs at once, alone.
        max_batch: a batch runs as soon as it holds this many frames (``GATEWAY_VAD_MAX_BATCH``).
    """

    def __init__(self, path: str | Path | None = None, batch_wait_ms: int = 0, max_batch: int = 64) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 4
        self.session = ort.InferenceSession(
            batched_graph(path or default_model_path()), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.batcher = VADBatcher(self.run, batch_wait_ms, max_batch)

    def run(self, x: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One step of B streams: ``x`` float32 (B, 576) (64 context + 512 new samples in [-1, 1)),
        ``h``/``c`` float32 (1, B, 128) → (probabilities float32 (B,), hn (1, B, 128), cn (1, B, 128))."""
        out: list[Any] = self.session.run(None, {"input": x, "h": h, "c": c})
        return np.asarray(out[0]).reshape(-1), out[1], out[2]

    def stream(self) -> VADStream:
        """A new per-call stream with fresh state."""
        return VADStream(self)


class VADStream:
    """Per-call VAD state: feed PCM16 at 16 kHz in any chunk size, get one speech probability
    per completed 512-sample frame.

    :meth:`feed` (the live call) scores frames through the process's batcher; :meth:`process`
    runs the model at once (offline tools, tests). Both keep one fixed buffer: the model input
    (64 context + 512 samples, float32) and the frame being filled (int16), no growing array.

    Digital silence (see :data:`SILENT_PEAK`) is not fed to the model: after seconds of the ±1 LSB
    pattern that resampled μ-law silence becomes, the LSTM state drifts so that, at some frame
    phases, the onset of the next utterance scores 0.2-0.45 and its first words are lost ("He
    turned sharply..." heard as "and sharply..."; ``tests/unit/test_vad_silence.py``). Skipping
    those frames keeps the state where real audio left it, and saves the model call.
    """

    def __init__(self, vad: SileroVAD) -> None:
        self._vad = vad
        self._batcher = vad.batcher
        self._batcher.register(self)
        self.h = np.zeros((1, 1, 128), dtype=np.float32)
        """LSTM state, float32 (1, 1, 128) (a view into the last batch's output)."""
        self.c = np.zeros((1, 1, 128), dtype=np.float32)
        self.x = np.zeros(CONTEXT_SAMPLES + FRAME_SAMPLES, dtype=np.float32)
        """The model input: the previous frame's last 64 samples, then the frame, float32 (576,)."""
        self._frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        self._filled = 0

    def _take(self, pcm16: np.ndarray, start: int) -> tuple[int, bool]:
        """Copy samples from ``pcm16[start:]`` into the frame; (next start, frame complete)."""
        n = min(FRAME_SAMPLES - self._filled, pcm16.size - start)
        self._frame[self._filled : self._filled + n] = pcm16[start : start + n]
        self._filled += n
        return start + n, self._filled == FRAME_SAMPLES

    def _complete(self) -> tuple[np.ndarray, bool]:
        """The completed frame (a copy, int16 (512,)) and whether the model must score it."""
        frame = self._frame.copy()
        self._filled = 0
        voiced = int(frame.max()) >= _SILENT_LSB or int(frame.min()) <= -_SILENT_LSB
        if voiced:
            np.multiply(frame, _SCALE, out=self.x[CONTEXT_SAMPLES:])
        else:  # keep the state; the context still moves on (to the silent frame's tail)
            np.multiply(frame[-CONTEXT_SAMPLES:], _SCALE, out=self.x[-CONTEXT_SAMPLES:])
        return frame, voiced

    def _advance(self) -> None:
        self.x[:CONTEXT_SAMPLES] = self.x[-CONTEXT_SAMPLES:]

    def process(self, pcm16: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Add samples (int16, shape (n,), 16 kHz), scoring each completed frame at once (batch of 1).

        Returns a list of ``(frame_pcm16 shape (512,), speech_probability in [0, 1])`` for each
        frame completed by this chunk (possibly empty).
        """
        out: list[tuple[np.ndarray, float]] = []
        start, size = 0, pcm16.size
        while start < size:
            start, full = self._take(pcm16, start)
            if not full:
                break
            frame, voiced = self._complete()
            prob = 0.0
            if voiced:
                probs, self.h, self.c = self._vad.run(self.x[None, :], self.h, self.c)
                prob = float(probs[0])
            self._advance()
            out.append((frame, prob))
        return out

    async def feed(self, pcm16: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """As :meth:`process`, each voiced frame scored in the process's next batch (waits up to
        ``batch_wait_ms``). Cancelled while waiting, the stream is left mid-frame: end it."""
        if self._batcher.wait_s <= 0:
            return self.process(pcm16)
        out: list[tuple[np.ndarray, float]] = []
        start, size = 0, pcm16.size
        while start < size:
            start, full = self._take(pcm16, start)
            if not full:
                break
            frame, voiced = self._complete()
            prob = 0.0
            if voiced:
                prob = await self._batcher.score(self)
            self._advance()
            out.append((frame, prob))
        return out
