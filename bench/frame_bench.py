"""Per-frame costs in the gateway: Silero batched vs unbatched, Twilio JSON codecs, the inbound chain.

``python -m bench.frame_bench`` (add ``--json FILE`` for the raw numbers):

- **VAD**: ``N`` simulated callers (1, 25, 50, 100) push 20 ms of real speech (models/audio,
  looped from random offsets, random phases) every 20 ms in real time into one process's
  :class:`~gateway.conversation.vad.SileroVAD` through :meth:`VADStream.feed`, for each
  ``GATEWAY_VAD_BATCH_WAIT_MS`` in ``--waits`` (0 = unbatched). CPU per scored frame is the
  process CPU of the run minus that of the same callers pushing nothing (the pacing itself);
  the table also gives the mean batch and the mean wait of a frame for its score.
- **Inbound chain and codecs**: µs per 20 ms ``media`` message for each step (tight loops).

Speech only (no digital silence, which the VAD skips): the worst case.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from gateway.conversation.endpointing import Endpointer
from gateway.conversation.vad import SileroVAD, default_model_path
from shared import twilio_media as tw
from shared.audio import Resampler, float_to_pcm16, read_audio, ulaw_decode, ulaw_encode
from shared.config import models_dir

CHUNK = 320
"""Samples per push at 16 kHz (one 20 ms Twilio frame, resampled)."""


def speech() -> np.ndarray:
    """Both recordings of models/audio, int16 16 kHz."""
    parts = [
        float_to_pcm16(read_audio(str(models_dir() / "audio" / f), 16000)[0])
        for f in ("arctic_a0009.wav", "caller_leak.wav")
    ]
    return np.concatenate(parts)


async def _caller(vad: SileroVAD | None, pcm: np.ndarray, t0: float, seconds: float, waits: list[float]) -> int:
    stream = vad.stream() if vad is not None else None
    loop = asyncio.get_running_loop()
    rng = random.Random()
    offset, phase, frames = rng.randrange(pcm.size - CHUNK), rng.random() * 0.02, 0
    if stream is not None:  # a random frame phase, as calls that started at different times
        stream.process(pcm[offset : offset + rng.randrange(512)])
    k = 0
    while (due := t0 + phase + k * 0.02) < t0 + seconds:
        await asyncio.sleep(max(due - loop.time(), 0))
        chunk = pcm[(offset + k * CHUNK) % (pcm.size - CHUNK) :][:CHUNK]
        k += 1
        if stream is None:
            continue
        start = time.perf_counter()
        scored = await stream.feed(chunk)
        if scored:
            frames += len(scored)
            waits.append(time.perf_counter() - start)
    return frames


async def vad_level(n: int, wait_ms: int | None, seconds: float, pcm: np.ndarray) -> dict[str, Any]:
    """One run: ``n`` callers, ``wait_ms`` (``None``: no VAD, the pacing baseline)."""
    vad = SileroVAD(batch_wait_ms=wait_ms or 0) if wait_ms is not None else None
    waits: list[float] = []
    loop = asyncio.get_running_loop()
    cpu0, t0 = time.process_time(), loop.time() + 0.05
    frames = await asyncio.gather(*(_caller(vad, pcm, t0, seconds, waits) for _ in range(n)))
    out: dict[str, Any] = {"n": n, "wait_ms": wait_ms, "cpu_s": time.process_time() - cpu0, "frames": sum(frames)}
    if vad is not None:
        b = vad.batcher
        out["mean_batch"] = b.frames / b.runs if b.runs else 1.0
        out["score_wait_ms"] = 1000 * float(np.mean(waits)) if waits else 0.0
    return out


def vad_table(levels: list[int], waits: list[int], seconds: float) -> list[dict[str, Any]]:
    pcm = speech()
    rows = []
    for n in levels:
        base = asyncio.run(vad_level(n, None, seconds, pcm))
        for w in waits:
            r = asyncio.run(vad_level(n, w, seconds, pcm))
            r["us_per_frame"] = 1e6 * (r["cpu_s"] - base["cpu_s"]) / max(r["frames"], 1)
            r["baseline_cpu_s"] = base["cpu_s"]
            rows.append(r)
    return rows


def per_call(fn: Callable[[], object], n: int = 20000) -> float:
    """CPU µs per call of ``fn`` (best of 3)."""
    best = float("inf")
    for _ in range(3):
        t = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - t) / n)
    return best * 1e6


def chain_table() -> dict[str, float]:
    """µs per 20 ms media message for each step of the inbound chain, and the JSON codecs."""
    pcm8 = float_to_pcm16(read_audio(str(models_dir() / "audio" / "caller_leak.wav"), 8000)[0])
    ulaw = ulaw_encode(pcm8[16000:16160])
    raw = tw.serialize_event(tw.Media("MZ" + "0" * 32, ulaw, chunk=812, timestamp_ms=16240, sequence_number=813))
    msg = json.loads(raw)
    payload = msg["media"]["payload"]
    cmd = tw.SendMedia("MZ" + "0" * 32, ulaw)
    out_msg = {"event": "media", "streamSid": cmd.stream_sid, "media": {"payload": payload}}
    rs, vad = Resampler(8000, 16000, quality="QQ"), SileroVAD().stream()
    ep = Endpointer(check_ms=200)
    frame = np.zeros(512, np.int16)
    speech16 = speech()[20000:20512]
    return {
        "json.loads (stdlib)": per_call(lambda: json.loads(raw)),
        "orjson.loads": per_call(lambda: orjson.loads(raw)),
        "base64 decode (160 B)": per_call(lambda: base64.b64decode(payload, validate=True)),
        "parse_event (whole)": per_call(lambda: tw.parse_event(raw)),
        "json.dumps (stdlib)": per_call(lambda: json.dumps(out_msg)),
        "orjson.dumps + decode": per_call(lambda: orjson.dumps(out_msg).decode()),
        "serialize_command (whole)": per_call(lambda: tw.serialize_command(cmd)),
        "ulaw_decode (160 B)": per_call(lambda: ulaw_decode(ulaw)),
        "resample 8→16 kHz QQ (160 samples)": per_call(lambda: rs.process(ulaw_decode(ulaw))),
        "Silero, one frame alone (per 32 ms)": per_call(lambda: vad.process(speech16), 2000),
        "endpointer push (per 32 ms)": per_call(lambda: ep.push(frame, 0.0)),
    }


def out(line: str) -> None:
    """One line of the report on stdout."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--levels", default="1,25,50,100")
    ap.add_argument("--waits", default="0,5,10,20", help="GATEWAY_VAD_BATCH_WAIT_MS values (0 = unbatched)")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    assert default_model_path().is_file()
    chain = chain_table()
    out("| step | µs per call |\n|---|---|")
    for k, v in chain.items():
        out(f"| {k} | {v:.1f} |")
    rows = vad_table([int(x) for x in a.levels.split(",")], [int(x) for x in a.waits.split(",")], a.seconds)
    out("\n| streams | wait ms | frames | mean batch | CPU µs / frame | vs unbatched | frame waits ms |")
    out("|---|---|---|---|---|---|---|")
    unb = {r["n"]: r["us_per_frame"] for r in rows if r["wait_ms"] == 0}
    for r in rows:
        ratio = r["us_per_frame"] / unb[r["n"]] if unb.get(r["n"]) else float("nan")
        out(
            f"| {r['n']} | {r['wait_ms']} | {r['frames']} | {r['mean_batch']:.1f} | {r['us_per_frame']:.0f} "
            f"| {ratio:.2f}x | {r['score_wait_ms']:.1f} |"
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"chain_us": chain, "vad": rows}, f, indent=1)


if __name__ == "__main__":
    main()
