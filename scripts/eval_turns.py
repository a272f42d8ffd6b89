"""Compare end-of-turn strategies: silence-only endpointing vs Smart Turn v3 (``make eval-turns``).

Each recording goes through the phone path (8 kHz μ-law round trip, 16 kHz resampling, Silero
VAD) into :class:`gateway.conversation.endpointing.Endpointer` exactly as the gateway runs it; for Smart Turn,
each ``PauseDetected`` is scored by the real model and the turn is committed at ≥ 0.5.

Two sets:
* complete turns (the real CMU ARCTIC recording, the default caller, short caller lines in three
  Kokoro voices) — measured: endpointing delay (end of speech → turn ended);
* turns with a mid-sentence pause (a clause, 600–1000 ms of silence, the rest) — measured:
  cut-offs (the turn ended inside the pause).

Prints a Markdown table. Usage: ``python scripts/eval_turns.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.conversation.endpointing import Endpointer, PauseDetected, SpeechEnded
from gateway.conversation.vad import SileroVAD
from shared.audio import Resampler, float_to_pcm16, read_audio, resample, ulaw_decode, ulaw_encode
from shared.config import models_dir
from shared.smart_turn import SmartTurn

COMPLETE = [
    "Hi, my kitchen sink is leaking. Can somebody come out today?",
    "My name is John Smith.",
    "How much does a repair usually cost?",
    "Tomorrow morning works for me.",
]
PAUSED = [
    ("The leak is under the kitchen sink and", "it is getting worse every minute."),
    ("My address is", "forty two Oak Street in Springfield."),
    ("I was wondering if", "you could send someone tomorrow."),
    ("The water heater in the basement is", "making a loud banging noise."),
]
VOICES = ["am_michael", "af_heart", "bf_emma"]
MODES: list[tuple[str, dict]] = [
    ("silence 500 ms", {"silence_ms": 500}),
    ("silence 800 ms", {"silence_ms": 800}),
    ("Smart Turn (200 ms check, 1500 ms max)", {"silence_ms": 1500, "check_ms": 200}),
]


def phone(audio16k: np.ndarray) -> np.ndarray:
    """float32 16 kHz → what the gateway sees: 8 kHz μ-law round trip, back to PCM16 16 kHz."""
    ulaw = ulaw_encode(float_to_pcm16(resample(audio16k, 16000, 8000)))
    rs = Resampler(8000, 16000)
    return np.concatenate([rs.process(ulaw_decode(ulaw)), rs.flush()])


def run(pcm16k: np.ndarray, vad: SileroVAD, smart: SmartTurn | None, **kw: int) -> list[SpeechEnded]:
    """Turns found in ``pcm16k`` (int16, 16 kHz; silence padded after it)."""
    ep = Endpointer(**kw)
    stream = vad.stream()
    turns: list[SpeechEnded] = []
    padded = np.concatenate([np.zeros(3200, np.int16), pcm16k, np.zeros(16000 * 2, np.int16)])
    for frame, prob in stream.process(padded):
        for ev in ep.push(frame, prob):
            if isinstance(ev, SpeechEnded):
                turns.append(ev)
            elif isinstance(ev, PauseDetected) and smart is not None and smart.probability(ev.audio) >= 0.5:
                ended = ep.commit()
                if ended is not None:
                    turns.append(ended)
    return turns


def main() -> int:
    """Synthesize the sets, run every mode, print the table."""
    from kokoro_onnx import Kokoro

    root = models_dir()
    kokoro = Kokoro(str(root / "kokoro" / "kokoro-v1.0.int8.onnx"), str(root / "kokoro" / "voices-v1.0.bin"))

    def say(text: str, voice: str) -> np.ndarray:
        samples, rate = kokoro.create(text, voice=voice, lang="en-us")
        return resample(np.asarray(samples, dtype=np.float32), rate, 16000)

    complete = [
        phone(read_audio(str(root / "audio" / "arctic_a0009.wav"), 16000)[0]),
        phone(read_audio(str(root / "audio" / "caller_leak.wav"), 16000)[0]),
    ]
    complete += [phone(say(t, v)) for t in COMPLETE for v in VOICES]
    paused = []
    for i, (a, b) in enumerate(PAUSED):
        for j, v in enumerate(VOICES):
            gap = np.zeros(int(16000 * (0.6 + 0.1 * ((i + j) % 5))), np.float32)
            paused.append(phone(np.concatenate([say(a, v), gap, say(b, v)])))
    vad, smart = SileroVAD(), SmartTurn()
    out = sys.stdout
    out.write(f"{len(complete)} complete turns (1 real recording), {len(paused)} turns with a 0.6–1.0 s pause\n\n")
    out.write(
        "| strategy | cut-offs in a pause | delay p50 (ms) | delay p95 (ms) | delay max (ms) |\n|---|---|---|---|---|\n"
    )
    for name, kw in MODES:
        use = smart if "check_ms" in kw else None
        delays = []
        for pcm in complete:
            turns = run(pcm, vad, use, **kw)
            if turns:
                delays.append(turns[-1].detected_ms - turns[-1].end_ms)
        cut = sum(len(run(pcm, vad, use, **kw)) > 1 for pcm in paused)
        out.write(
            f"| {name} | {cut}/{len(paused)} | {np.percentile(delays, 50):.0f} | "
            f"{np.percentile(delays, 95):.0f} | {max(delays):.0f} |\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
