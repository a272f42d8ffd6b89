"""TTS benchmark: time to first audio (TTFA) and real-time factor (RTF) at several concurrencies.

``make bench-tts`` runs ``python -m bench.tts_bench``: it starts the TTS app in-process (uvicorn on a
free loopback port, real model), then for each input (``short``: one sentence; ``long``: a
paragraph of five sentences) and each concurrency ``c`` in ``--levels`` it runs ``c`` clients at once,
each sending ``--rounds`` streamed ``POST /v1/audio/speech`` (``response_format=pcm``) requests.

Per request: TTFA = request sent → first audio byte received; RTF = request wall time / seconds of
audio returned. Per cell: TTFA p50/p95, mean RTF, and throughput = audio seconds produced per wall
second (all clients together). Markdown goes to stdout, raw numbers to ``--json``.

``--equivalence DIR`` instead synthesises fixed sentences with the ONNX backend (CPU) and the
configured backend (e.g. ``TTS_BACKEND=torch TTS_DEVICE=cuda``), writes both as WAV into DIR and
prints duration ratios and a DTW-aligned log-spectrogram distance (with a different voice as the
"clearly different" reference). Transcribe the WAVs with faster-whisper for the STT round trip.

Settings come from the ``TTS_`` environment (see ``services/tts/config.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tools.stack import free_port

SHORT = "Thanks for calling, how can I help you today?"
LONG = (
    "Thanks for calling Riverside Dental, this is the after-hours assistant. "
    "Our office is open Monday through Friday from 8:30 am to 5 pm. "
    "If this is an emergency, please call our on-call line at 555-201-3344. "
    "Otherwise, I can take a message and someone will get back to you tomorrow morning. "
    "Could you tell me your name and the best number to reach you?"
)
EQUIV_SENTENCES = [
    "Your appointment is at 3:30 pm on Tuesday.",
    "Please call us back at 555-123-4567 if you need to reschedule.",
    "The total comes to $42.50, including tax.",
    "Dr. Smith's office is at 123 Main St., suite 200.",
]


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Server:
    """The TTS app under uvicorn in a background thread (lifespan included)."""

    def __init__(self) -> None:
        import uvicorn

        from services.tts import create_app

        self.port = free_port()
        self.app = create_app()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 300
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("TTS server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def one_request(client: httpx.AsyncClient, text: str) -> dict[str, float]:
    """Stream one pcm request; return ttfa_s, total_s, audio_s, rtf."""
    body = {"model": "kokoro", "input": text, "voice": "af_heart", "response_format": "pcm"}
    started = time.perf_counter()
    first: float | None = None
    size = 0
    async with client.stream("POST", "/v1/audio/speech", json=body) as resp:
        if resp.status_code != 200:
            await resp.aread()
            return {"error": float(resp.status_code)}
        async for chunk in resp.aiter_bytes():
            if chunk and first is None:
                first = time.perf_counter()
            size += len(chunk)
    total = time.perf_counter() - started
    audio_s = size / 2 / 24000
    return {"ttfa_s": (first or started) - started, "total_s": total, "audio_s": audio_s, "rtf": total / audio_s}


async def run_cell(url: str, text: str, concurrency: int, rounds: int) -> dict[str, Any]:
    """``concurrency`` clients × ``rounds`` sequential requests each; aggregate statistics."""
    limits = httpx.Limits(max_connections=concurrency + 2)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def client_loop() -> list[dict[str, float]]:
            return [await one_request(client, text) for _ in range(rounds)]

        started = time.perf_counter()
        every = [r for rs in await asyncio.gather(*(client_loop() for _ in range(concurrency))) for r in rs]
        wall = time.perf_counter() - started
    results = [r for r in every if "error" not in r]
    if not results:
        return {"concurrency": concurrency, "requests": len(every), "errors": len(every)}
    ttfa = sorted(r["ttfa_s"] for r in results)
    return {
        "concurrency": concurrency,
        "requests": len(every),
        "errors": len(every) - len(results),
        "ttfa_p50_ms": 1000 * statistics.median(ttfa),
        "ttfa_p95_ms": 1000 * ttfa[min(len(ttfa) - 1, round(0.95 * (len(ttfa) - 1)))],
        "rtf_mean": statistics.fmean(r["rtf"] for r in results),
        "audio_s_per_request": statistics.fmean(r["audio_s"] for r in results),
        "throughput_x_realtime": sum(r["audio_s"] for r in results) / wall,
        "wall_s": wall,
    }


def bench(levels: list[int], rounds: int, inputs: list[str]) -> list[dict[str, Any]]:
    """Run every (input, concurrency) cell against an in-process server.

    The queue bound defaults to 1024 here (``TTS_MAX_QUEUE``): the benchmark measures latency under
    load, not admission control (16 paragraphs of 5 sentences exceed the service default of 64).
    """
    os.environ.setdefault("TTS_MAX_QUEUE", "1024")
    rows = []
    with Server() as srv:
        engine = srv.app.state.engine
        _out(
            f"backend={engine.backend.name} device={engine.backend.device} "
            f"max_inflight={engine.settings.max_inflight} threads={engine.settings.threads}"
        )
        for name in inputs:
            text = SHORT if name == "short" else LONG
            for c in levels:
                row = {"input": name, **asyncio.run(run_cell(srv.url, text, c, rounds if c == 1 else 1))}
                rows.append(row)
                _out(json.dumps(row))
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The results as a markdown table."""
    lines = [
        "| input | concurrency | requests (errors) | audio/request (s) | TTFA p50 (ms) | TTFA p95 (ms) | RTF mean "
        "| throughput (× real time) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "ttfa_p50_ms" not in r:
            lines.append(f"| {r['input']} | {r['concurrency']} | {r['requests']} ({r['errors']}) | – | – | – | – | – |")
            continue
        lines.append(
            f"| {r['input']} | {r['concurrency']} | {r['requests']} ({r['errors']}) | {r['audio_s_per_request']:.2f} | "
            f"{r['ttfa_p50_ms']:.0f} | {r['ttfa_p95_ms']:.0f} | {r['rtf_mean']:.3f} | "
            f"{r['throughput_x_realtime']:.2f} |"
        )
    return "\n".join(lines)


# Equivalence -------------------------------------------------------------------------------------
def _logspec(x: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    mag = np.abs(np.fft.rfft(frames, axis=-1))[:, :256]  # 0–6 kHz
    spec: np.ndarray = np.log(mag + 1e-4)
    return spec


def dtw_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean distance between log-spectrogram frames along the best DTW path (Sakoe–Chiba 1978)."""
    sa, sb = _logspec(a), _logspec(b)
    cost = np.sqrt(((sa[:, None, :] - sb[None, :, :]) ** 2).mean(-1))
    acc = np.full((len(sa) + 1, len(sb) + 1), np.inf)
    acc[0, 0] = 0.0
    steps = np.zeros_like(acc)
    for i in range(1, len(sa) + 1):
        for j in range(1, len(sb) + 1):
            k = int(np.argmin((acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])))
            prev = ((i - 1, j - 1), (i - 1, j), (i, j - 1))[k]
            acc[i, j] = cost[i - 1, j - 1] + acc[prev]
            steps[i, j] = steps[prev] + 1
    return float(acc[-1, -1] / steps[-1, -1])


def equivalence(out_dir: Path) -> None:
    """Compare the configured backend with the ONNX CPU backend on :data:`EQUIV_SENTENCES`."""
    import soundfile as sf

    from services.tts.config import TTSSettings
    from services.tts.engine import KokoroEngine, SegmentJob
    from services.tts.normalize import normalize_for_speech

    out_dir.mkdir(parents=True, exist_ok=True)
    ref = KokoroEngine(TTSSettings(backend="onnx", device="cpu"))
    dut = KokoroEngine(TTSSettings())
    _out(f"reference onnx/cpu vs {dut.backend.name}/{dut.backend.device}")
    _out("| sentence | onnx s | dut s | duration ratio | DTW dist onnx↔dut | DTW dist onnx↔other voice |")
    _out("|---|---|---|---|---|---|")
    for i, sentence in enumerate(EQUIV_SENTENCES):
        job = SegmentJob(normalize_for_speech(sentence), "af_heart", 1.0, False)
        a = ref.render_batch([job])[0]
        t = time.perf_counter()
        b = dut.render_batch([job])[0]
        dut_s = time.perf_counter() - t
        other = ref.render_batch([SegmentJob(job.text, "am_michael", 1.0, False)])[0]
        sf.write(out_dir / f"onnx_{i}.wav", a, 24000)
        sf.write(out_dir / f"{dut.backend.name}_{i}.wav", b, 24000)
        _out(
            f"| {sentence} | {a.size / 24000:.2f} | {b.size / 24000:.2f} | {b.size / a.size:.3f} | "
            f"{dtw_distance(a, b):.3f} | {dtw_distance(a, other):.3f} |  ({dut_s:.2f}s)"
        )
    if dut.settings.max_batch > 1:  # all sentences (different lengths) in one padded pass
        jobs = [SegmentJob(normalize_for_speech(s), "af_heart", 1.0, False) for s in EQUIV_SENTENCES]
        for i, (a, b) in enumerate(zip(ref.render_batch(jobs), dut.render_batch(jobs), strict=True)):
            sf.write(out_dir / f"{dut.backend.name}_batched_{i}.wav", b, 24000)
            _out(
                f"| batched: {EQUIV_SENTENCES[i]} | {a.size / 24000:.2f} | {b.size / 24000:.2f} | "
                f"{b.size / a.size:.3f} | {dtw_distance(a, b):.3f} | – |"
            )


def batch_probe(sizes: list[int]) -> None:
    """Does batching pay on this device? Time one padded forward pass over B windows vs B passes.

    Uses B copies of one sentence (equal lengths, so padding cannot change the result and the
    batched output must equal the single one); reports ms per window and the max abs difference.
    Needs ``TTS_BACKEND=torch``.
    """
    import torch

    from services.tts.config import TTSSettings
    from services.tts.engine import KokoroEngine, SegmentJob
    from services.tts.normalize import normalize_for_speech
    from services.tts.torch_backend import forward_batch

    engine = KokoroEngine(TTSSettings())
    backend: Any = engine.backend
    _out(f"batch probe on {backend.device}")
    _out("| input | B | B× single pass (ms/window) | one batched pass (ms/window) | speed-up | max abs diff |")
    _out("|---|---|---|---|---|---|")
    for name, text in (("short", SHORT), ("long sentence", EQUIV_SENTENCES[1])):
        item = engine._windows(SegmentJob(normalize_for_speech(text), "af_heart", 1.0, False))[0][0]
        single = backend.infer([item])[0]
        for b in sizes:
            sync = torch.cuda.synchronize if backend.device.startswith("cuda") else (lambda: None)
            for _ in range(2):  # warm-up
                forward_batch(backend, [item] * b)
            sync()
            t = time.perf_counter()
            backend.infer([item] * b)
            sync()
            seq_ms = (time.perf_counter() - t) * 1000 / b
            t = time.perf_counter()
            batched = forward_batch(backend, [item] * b)
            sync()
            bat_ms = (time.perf_counter() - t) * 1000 / b
            diff = max(float(np.abs(x[: single.size] - single).max()) for x in batched)
            _out(f"| {name} | {b} | {seq_ms:.1f} | {bat_ms:.1f} | {seq_ms / bat_ms:.2f}× | {diff:.2e} |")


def main(argv: list[str] | None = None) -> None:
    """CLI entry point (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--levels", default="1,4,16", help="concurrencies, comma-separated")
    p.add_argument("--rounds", type=int, default=3, help="sequential requests per client at concurrency 1")
    p.add_argument("--inputs", default="short,long")
    p.add_argument("--json", type=Path, help="write the raw rows here")
    p.add_argument("--equivalence", type=Path, metavar="DIR", help="compare backends instead (WAVs into DIR)")
    p.add_argument("--batch-probe", default="", help="batch sizes for the batching probe, e.g. 1,4,8,16")
    args = p.parse_args(argv)
    if args.batch_probe:
        batch_probe([int(x) for x in args.batch_probe.split(",")])
        return
    if args.equivalence:
        equivalence(args.equivalence)
        return
    rows = bench([int(x) for x in args.levels.split(",")], args.rounds, args.inputs.split(","))
    _out()
    _out(markdown(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
