"""Word error rate of the STT model on recordings with reference transcripts (``make eval-stt``).

Every ``*.wav`` with a ``.txt`` reference beside it in ``--audio-dir`` (default ``models/audio``:
CMU ARCTIC a0009, real speech, and the synthetic caller) is transcribed twice: as recorded
(wideband) and as a phone line carries it (resampled to 8 kHz, G.711 μ-law encoded and decoded,
back to 16 kHz — ``shared.audio``). Prints WER per file and band and overall (jiwer, after
lower-casing and removing punctuation; overall = errors / reference words over all files).

By default the model runs in-process through ``WhisperEngine`` (``STT_*`` settings, e.g.
``STT_MODEL``); ``--url http://host:port`` evaluates a running service through its raw endpoint.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import jiwer
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.stt.engine import SAMPLE_RATE_HZ  # noqa: E402
from shared.audio import (  # noqa: E402
    TELEPHONY_RATE_HZ,
    float_to_pcm16,
    pcm16_to_float,
    read_audio,
    resample,
    ulaw_decode,
    ulaw_encode,
)
from shared.config import models_dir  # noqa: E402

NORMALISE = jiwer.Compose(
    [
        jiwer.ToLowerCase(),
        jiwer.RemovePunctuation(),
        jiwer.RemoveMultipleSpaces(),
        jiwer.Strip(),
        jiwer.ReduceToListOfListOfWords(),
    ]
)


def telephone_band(audio: np.ndarray) -> np.ndarray:
    """16 kHz float32 (n,) → 8 kHz → μ-law → PCM16 → 16 kHz float32: what a phone call delivers."""
    narrow = resample(audio, SAMPLE_RATE_HZ, TELEPHONY_RATE_HZ)
    decoded = pcm16_to_float(ulaw_decode(ulaw_encode(float_to_pcm16(narrow))))
    return resample(decoded, TELEPHONY_RATE_HZ, SAMPLE_RATE_HZ)


def load_cases(audio_dir: Path) -> list[tuple[str, str, np.ndarray, str]]:
    """(file, band, float32 16 kHz audio, reference) for every WAV with a ``.txt`` beside it."""
    cases = []
    for wav in sorted(audio_dir.glob("*.wav")):
        ref = wav.with_suffix(".txt")
        if not ref.exists():
            continue
        audio, _ = read_audio(str(wav), target_rate=SAMPLE_RATE_HZ)
        text = ref.read_text().strip()
        cases.append((wav.name, "wideband", audio, text))
        cases.append((wav.name, "8k μ-law", telephone_band(audio), text))
    return cases


def transcribe_local(audios: list[np.ndarray]) -> list[str]:
    """All cases in one batched ``generate`` through the service's engine."""
    from services.stt.config import STTSettings
    from services.stt.engine import WhisperEngine

    engine = WhisperEngine(STTSettings())
    opts = engine.default_options()
    return [r.text for r in engine.run_batch([engine.prepare(a, opts) for a in audios])]


def transcribe_remote(url: str, audios: list[np.ndarray]) -> list[str]:
    """Each case through ``POST {url}/v1/audio/transcriptions/raw`` (PCM16, 16 kHz)."""
    import httpx

    out = []
    with httpx.Client(base_url=url, timeout=120) as client:
        for audio in audios:
            r = client.post(
                "/v1/audio/transcriptions/raw",
                params={"sample_rate": SAMPLE_RATE_HZ},
                content=float_to_pcm16(audio).astype("<i2").tobytes(),
            )
            r.raise_for_status()
            out.append(str(r.json()["text"]))
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation and print the table; returns the exit status (1 when no cases)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audio-dir", type=Path, default=models_dir() / "audio")
    p.add_argument("--url", default=None, help="evaluate a running STT service instead of the in-process engine")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cases = load_cases(args.audio_dir)
    if not cases:
        sys.stderr.write(f"no *.wav with a .txt reference in {args.audio_dir}; run `make models`\n")
        return 1
    audios = [c[2] for c in cases]
    hyps = transcribe_remote(args.url, audios) if args.url else transcribe_local(audios)
    lines = ["| file | band | WER | transcript |", "|---|---|---|---|"]
    for (name, band, _, ref), hyp in zip(cases, hyps, strict=True):
        w = jiwer.wer(ref, hyp, reference_transform=NORMALISE, hypothesis_transform=NORMALISE)
        lines.append(f"| {name} | {band} | {w:.3f} | {hyp} |")
    for band in ("wideband", "8k μ-law"):
        refs = [c[3] for c in cases if c[1] == band]
        hs = [h for c, h in zip(cases, hyps, strict=True) if c[1] == band]
        w = jiwer.wer(refs, hs, reference_transform=NORMALISE, hypothesis_transform=NORMALISE)
        lines.append(f"| **all** | {band} | **{w:.3f}** | |")
    overall = jiwer.wer([c[3] for c in cases], hyps, reference_transform=NORMALISE, hypothesis_transform=NORMALISE)
    lines.append(f"| **all** | both | **{overall:.3f}** | |")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
