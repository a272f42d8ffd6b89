"""Semantic end-of-turn detection with Smart Turn v3 (ONNX, BSD-2, by Daily/pipecat).

Model: https://github.com/pipecat-ai/smart-turn — a Whisper-encoder classifier over the last 8 s
of the caller's audio at 16 kHz: probability that the caller has finished their turn. Input is
Whisper log-mel (80 × 800) of the zero-mean/unit-variance waveform, left-padded with zeros to
8 s, exactly as pipecat's ``LocalSmartTurnAnalyzerV3`` prepares it; faster-whisper's numpy
``FeatureExtractor`` computes the same features (max difference 5e-6 against pipecat's copy of
``transformers.WhisperFeatureExtractor``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.config import models_dir

SAMPLE_RATE_HZ = 16000
WINDOW_SAMPLES = 8 * SAMPLE_RATE_HZ


def default_model_path() -> Path:
    """``models/smart-turn/smart-turn-v3.2-cpu.onnx`` (fetched by ``make models``)."""
    return models_dir() / "smart-turn" / "smart-turn-v3.2-cpu.onnx"


class SmartTurn:
    """One ONNX session shared by all calls (inference is stateless).

    Raises:
        FileNotFoundError: the model file is missing (run ``make models``).
    """

    def __init__(self, path: str | Path | None = None, threads: int = 1) -> None:
        import onnxruntime as ort
        from faster_whisper.feature_extractor import FeatureExtractor

        path = Path(path or default_model_path())
        if not path.is_file():
            raise FileNotFoundError(f"Smart Turn model {path} is missing; run `make models`")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.features = FeatureExtractor(feature_size=80, sampling_rate=SAMPLE_RATE_HZ, chunk_length=8)

    def probability(self, pcm16: np.ndarray) -> float:
        """Probability (0..1) that the turn is complete, given the utterance so far.

        Args:
            pcm16: the caller's current utterance, int16 shape (n,) at 16 kHz (the last 8 s count).
        """
        x = pcm16[-WINDOW_SAMPLES:].astype(np.float32) / 32768.0
        x = np.pad(x, (WINDOW_SAMPLES - x.size, 0))
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        mel = self.features(x.astype(np.float32), padding=0)[None, :, :].astype(np.float32)
        logits = self.session.run(None, {"input_features": mel})[0]
        return float(np.asarray(logits).reshape(-1)[0])
