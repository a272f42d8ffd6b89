"""CPU cost of one Smart Turn check, alone vs batched: ``python -m bench.turn_bench``.

Times features (faster-whisper log-mel, per item vs :meth:`SmartTurn.feature_batch`) and the ONNX
run separately for batch 1, 4, 8, 16, as CPU seconds of this process (``time.process_time``:
all threads) and wall seconds, per check. On a shared box compare the ratios of one run, not
absolute numbers. The result and the decision are in docs/turn-taking.md "Where Smart Turn runs".
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

import numpy as np

from shared.audio import float_to_pcm16, read_audio
from shared.config import models_dir
from shared.smart_turn import SmartTurn


def _windows(n: int) -> list[np.ndarray]:
    """``n`` real utterances: the ARCTIC recording cut at different points (int16 16 kHz)."""
    audio, _ = read_audio(str(models_dir() / "audio" / "arctic_a0009.wav"), 16000)
    pcm = float_to_pcm16(audio)
    return [pcm[: int(pcm.size * (0.4 + 0.6 * (i % 8) / 7))] for i in range(n)]


def _per_check(fn: Callable[[], object], batch: int, reps: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per check of ``fn``, which handles ``batch`` checks, best of ``reps``."""
    fn()  # warm
    cpu, wall = [], []
    for _ in range(reps):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return 1000 * min(cpu) / batch, 1000 * min(wall) / batch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", default="1,4,8,16")
    ap.add_argument("--threads", default="1,2", help="intra-op threads of the ONNX session to try")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    rows = []
    out = sys.stdout
    out.write("| threads | batch | features/item ms CPU | features batched ms CPU | ONNX ms CPU | ONNX ms wall |")
    out.write(" total ms CPU |\n")
    out.write("|---|---|---|---|---|---|---|\n")
    for threads in (int(t) for t in args.threads.split(",")):
        model = SmartTurn(threads=threads)
        for b in (int(x) for x in args.batches.split(",")):
            items = _windows(b)
            feats = model.feature_batch(items)
            f_item, _ = _per_check(lambda items=items, m=model: [m.feature(p) for p in items], b, args.reps)
            f_batch, _ = _per_check(lambda items=items, m=model: m.feature_batch(items), b, args.reps)
            o_cpu, o_wall = _per_check(lambda feats=feats, m=model: m.run(feats), b, args.reps)
            row = {"threads": threads, "batch": b, "features_item_cpu_ms": f_item, "features_batched_cpu_ms": f_batch}
            row |= {"onnx_cpu_ms": o_cpu, "onnx_wall_ms": o_wall, "total_cpu_ms": min(f_item, f_batch) + o_cpu}
            rows.append(row)
            cells = (f_item, f_batch, o_cpu, o_wall, row["total_cpu_ms"])
            out.write(f"| {threads} | {b} | " + " | ".join(f"{v:.1f}" for v in cells) + " |\n")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
