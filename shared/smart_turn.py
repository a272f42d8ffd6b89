"""Semantic end-of-turn detection with Smart Turn v3 (ONNX, BSD-2, by Daily/pipecat).

Model: https://github.com/pipecat-ai/smart-turn — a Whisper-encoder classifier over the last 8 s
of the caller's audio at 16 kHz: probability that the caller has finished their turn. Input is
Whisper log-mel (80 × 800) of the zero-mean/unit-variance waveform, left-padded with zeros to
8 s, exactly as pipecat's ``LocalSmartTurnAnalyzerV3`` prepares it; faster-whisper's numpy
``FeatureExtractor`` computes the same features (max difference 5e-6 against pipecat's copy of
``transformers.WhisperFeatureExtractor``).

The graph's input is ``input_features`` float32 ``[batch, 80, 800]`` with a symbolic batch
dimension (output ``logits`` ``[batch, 1]``, already a probability), so :meth:`SmartTurn.probabilities`
scores many windows in one ONNX run. It runs in the gateway (``GATEWAY_SMART_TURN_BACKEND=local``)
or, batched across calls, behind the STT service's ``POST /v1/turn`` (``stt``); see
docs/turn-taking.md "Where Smart Turn runs".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shared.config import models_dir

SAMPLE_RATE_HZ = 16000
WINDOW_SAMPLES = 8 * SAMPLE_RATE_HZ
"""The model sees the last 8 s (128 000 samples at 16 kHz); earlier audio is ignored."""
N_MELS, N_FRAMES = 80, 800


def default_model_path() -> Path:
    """``models/smart-turn/smart-turn-v3.2-cpu.onnx`` (fetched by ``make models``)."""
    return models_dir() / "smart-turn" / "smart-turn-v3.2-cpu.onnx"


def last_window(pcm16: np.ndarray) -> np.ndarray:
    """The part of an utterance the model looks at: the last ``WINDOW_SAMPLES`` of int16 (n,) 16 kHz
    audio (a view, no copy; shorter audio is returned whole)."""
    return pcm16[-WINDOW_SAMPLES:]


def normalised_window(pcm16: np.ndarray) -> np.ndarray:
    """float32 (128000,): the last 8 s of int16 16 kHz audio, left-padded with zeros, zero-mean and
    unit-variance (over the padded window, as pipecat does)."""
    x = last_window(pcm16).astype(np.float32) / 32768.0
    x = np.pad(x, (WINDOW_SAMPLES - x.size, 0))
    return ((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32)


class SmartTurn:
    """One ONNX session shared by all calls (inference is stateless; ``run`` is thread-safe).

    Args:
        path: the ONNX file (default :func:`default_model_path`).
        threads: intra-op threads of the CPU provider.
        providers: onnxruntime execution providers in order of preference (default CPU only; the
            STT service passes ``CUDAExecutionProvider`` first when onnxruntime offers it).
    Raises:
        FileNotFoundError: the model file is missing (run ``make models``).
    """

    def __init__(
        self, path: str | Path | None = None, threads: int = 1, providers: Sequence[str] = ("CPUExecutionProvider",)
    ) -> None:
        import onnxruntime as ort
        from faster_whisper.feature_extractor import FeatureExtractor

        path = Path(path or default_model_path())
        if not path.is_file():
            raise FileNotFoundError(f"Smart Turn model {path} is missing; run `make models`")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=list(providers))
        self.providers: list[str] = self.session.get_providers()
        """The providers the session actually uses (CUDA falls back to CPU when it cannot load)."""
        self.features = FeatureExtractor(feature_size=N_MELS, sampling_rate=SAMPLE_RATE_HZ, chunk_length=8)
        self._window = np.hanning(self.features.n_fft + 1)[:-1].astype(np.float32)

    def feature(self, pcm16: np.ndarray) -> np.ndarray:
        """Log-mel features of one utterance: float32 (80, 800) (faster-whisper's extractor)."""
        return self.features(normalised_window(pcm16), padding=0).astype(np.float32)

    def feature_batch(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        """Log-mel features of many utterances at once: float32 (B, 80, 800), equal to stacking
        :meth:`feature` of each (one batched STFT and mel product; the floor (max − 8, log10) per item, where
        faster-whisper's ``__call__`` would take one maximum over the whole batch)."""
        fe = self.features
        x = np.stack([normalised_window(p) for p in batch])
        stft = fe.stft(x, fe.n_fft, fe.hop_length, window=self._window, return_complex=True).astype(np.complex64)
        mel = fe.mel_filters @ (np.abs(stft[..., :-1]) ** 2)
        log_spec = np.log10(np.clip(mel, a_min=1e-10, a_max=None))
        log_spec = np.maximum(log_spec, log_spec.max(axis=(1, 2), keepdims=True) - 8.0)
        return ((log_spec + 4.0) / 4.0).astype(np.float32)

    def run(self, features: np.ndarray) -> np.ndarray:
        """One ONNX run over float32 (B, 80, 800) features; float32 (B,) probabilities (0..1)."""
        out = self.session.run(None, {"input_features": np.ascontiguousarray(features, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def probabilities(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        """P(turn complete) for many utterances in one ONNX run: float32 (B,), same order.

        Args:
            batch: each the caller's utterance so far, int16 (n,) at 16 kHz (the last 8 s count);
                empty → an empty result.
        """
        if not batch:
            return np.zeros(0, dtype=np.float32)
        return self.run(self.feature_batch(batch))

    def probability(self, pcm16: np.ndarray) -> float:
        """Probability (0..1) that the turn is complete, given the utterance so far.

        Args:
            pcm16: the caller's current utterance, int16 shape (n,) at 16 kHz (the last 8 s count).
        """
        return float(self.run(self.feature(pcm16)[None])[0])
