"""STT throughput/latency benchmark: the batching scheduler vs. batch size 1 (the seeds' design).

N concurrent closed-loop clients (default N = 1, 4, 16, 64) each send 2–5 s utterances one after
another; per N and per configuration it reports requests/s, audio-seconds/s, p50/p95 latency
(client side, ms) and the mean batch size, then the batched/batch-1 ratios.

Modes:
  ``http`` (default): starts ``python -m services.stt`` twice as a subprocess on a free loopback
  port (``STT_MAX_BATCH=1`` and ``STT_MAX_BATCH=--max-batch``) and drives the gateway's hot path,
  ``POST /v1/audio/transcriptions/raw``; mean batch size comes from ``/metrics``.
  ``direct``: no HTTP (for a GPU box without FastAPI): one ``WhisperEngine`` in-process and one
  ``BatchScheduler`` per configuration; clients call ``engine.prepare`` + ``scheduler.submit``.

Utterances: WAV files in ``--audio-dir`` (default ``out/bench-audio``); when it is empty they are
synthesised once with Kokoro (8 sentences, 3 voices, 16 kHz PCM16), else cut from models/audio.

Examples::

    python -m bench.stt_bench                                   # CPU, HTTP, int8
    python -m bench.stt_bench --mode direct --device cuda --compute-type float16 --max-batch 64
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import statistics
import sys
import time
import wave
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tools.stack import free_port as _free_port

log = logging.getLogger("bench.stt")
ROOT = Path(__file__).resolve().parent.parent
SENTENCES = [
    "Hi, I would like to book a table for two tonight.",
    "My washing machine is leaking water onto the floor.",
    "Can you tell me when the pharmacy closes today?",
    "I need to move my appointment from Wednesday afternoon to Friday morning, if that is possible.",
    "The heating in our office stopped working an hour ago and it is getting very cold in here.",
    "Please call me back on my mobile number.",
    "Is there parking available near the clinic?",
    "I want to check the status of my delivery.",
]
VOICES = ["af_heart", "am_michael", "bf_emma"]


@dataclass
class Utterance:
    """PCM16 mono 16 kHz speech: ``pcm`` (n,) int16 and its length in seconds."""

    name: str
    pcm: np.ndarray
    seconds: float
    text: str = ""
    """Reference transcript (from the ``.txt`` beside the WAV), if any."""


@dataclass
class Row:
    """One (concurrency, configuration) measurement; latencies in ms."""

    concurrency: int
    config: str
    requests: int
    wall_s: float
    rps: float
    audio_s_per_s: float
    p50_ms: float
    p95_ms: float
    mean_batch: float


# ----------------------------------------------------------------------------------- audio
def _read_wav16k(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1 or w.getframerate() != 16000:
            raise ValueError(f"{path}: bench audio must be 16 kHz mono PCM16")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


def _write_wav16k(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.astype("<i2").tobytes())


def _synthesise(audio_dir: Path) -> None:
    """Write the bench sentences as 16 kHz PCM16 WAVs (Kokoro if installed, else real/synthetic clips)."""
    from shared.audio import float_to_pcm16, read_audio
    from shared.config import models_dir

    audio_dir.mkdir(parents=True, exist_ok=True)
    kdir = models_dir() / "kokoro"
    try:
        from kokoro_onnx import Kokoro

        tts = Kokoro(str(kdir / "kokoro-v1.0.int8.onnx"), str(kdir / "voices-v1.0.bin"))
    except Exception as exc:  # no Kokoro: cut the stored recordings into ≤ 5 s clips
        log.warning("Kokoro unavailable (%s); using models/audio clips", exc)
        for src in sorted((models_dir() / "audio").glob("*.wav")):
            audio, _ = read_audio(str(src), target_rate=16000)
            _write_wav16k(audio_dir / f"{src.stem}.wav", float_to_pcm16(audio[: 5 * 16000]))
        return
    from shared.audio import resample

    for i, text in enumerate(SENTENCES):
        voice = VOICES[i % len(VOICES)]
        samples, rate = tts.create(text, voice=voice, lang="en-gb" if voice.startswith("b") else "en-us")
        pcm = float_to_pcm16(resample(np.asarray(samples, dtype=np.float32), int(rate), 16000))
        _write_wav16k(audio_dir / f"{i:02d}_{voice}.wav", pcm)
        (audio_dir / f"{i:02d}_{voice}.txt").write_text(text + "\n")


def load_utterances(audio_dir: Path) -> list[Utterance]:
    """The bench's utterances (16 kHz PCM16 WAVs in ``audio_dir``), synthesised on first use."""
    if not any(audio_dir.glob("*.wav")):
        _synthesise(audio_dir)
    out = []
    for path in sorted(audio_dir.glob("*.wav")):
        pcm = _read_wav16k(path)
        ref = path.with_suffix(".txt")
        out.append(Utterance(path.stem, pcm, pcm.size / 16000, ref.read_text().strip() if ref.exists() else ""))
    return out


# ----------------------------------------------------------------------------------- driving
async def drive(
    send: Callable[[Utterance], Awaitable[str]], utterances: list[Utterance], concurrency: int, total: int
) -> tuple[list[float], float, float]:
    """Run ``concurrency`` closed-loop clients for ≈ ``total`` requests.

    Returns (latencies in s, audio seconds sent, wall time in s).
    """
    per_client = max(1, math.ceil(total / concurrency))
    latencies: list[float] = []
    audio = 0.0

    async def client(c: int) -> None:
        nonlocal audio
        for k in range(per_client):
            u = utterances[(c * 3 + k) % len(utterances)]
            started = time.perf_counter()
            text = await send(u)
            latencies.append(time.perf_counter() - started)
            audio += u.seconds
            if not text.strip():
                log.warning("empty transcript for %s", u.name)

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(concurrency)))
    return latencies, audio, time.perf_counter() - started


def _row(n: int, config: str, lat: list[float], audio: float, wall: float, mean_batch: float) -> Row:
    ms = sorted(x * 1000 for x in lat)
    p95 = ms[min(len(ms) - 1, math.ceil(0.95 * len(ms)) - 1)]
    return Row(
        n, config, len(lat), round(wall, 2), len(lat) / wall, audio / wall, statistics.median(ms), p95, mean_batch
    )


def _norm(text: str) -> str:
    """Lower-case words without punctuation (for the exact-match sanity check)."""
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


def _samples(text: str) -> list[Any]:
    from prometheus_client.parser import text_string_to_metric_families

    return [s for f in text_string_to_metric_families(text) for s in f.samples]


def _batch_counts(text: str) -> tuple[float, float]:
    """(batched calls, windows in them) from ``stt_batch_size`` in the exposition text."""
    samples = _samples(text)
    count = sum(s.value for s in samples if s.name == "stt_batch_size_count")
    return count, sum(s.value for s in samples if s.name == "stt_batch_size_sum")


def _stage_means(before: str, after: str) -> str:
    """Mean milliseconds per stage (``stt_stage_seconds``) between two scrapes."""

    def totals(text: str) -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = {}
        for s in _samples(text):
            if s.name in ("stt_stage_seconds_sum", "stt_stage_seconds_count"):
                out[(s.labels["stage"], s.name)] = s.value
        return out

    a, b = totals(before), totals(after)
    parts = []
    for stage in ("features", "setup", "encode", "generate", "post"):
        n = b.get((stage, "stt_stage_seconds_count"), 0) - a.get((stage, "stt_stage_seconds_count"), 0)
        total = b.get((stage, "stt_stage_seconds_sum"), 0) - a.get((stage, "stt_stage_seconds_sum"), 0)
        if n:
            parts.append(f"{stage}={1000 * total / n:.1f}")
    return " ".join(parts) + " (features: per request)"


@dataclass
class Target:
    """One configuration under test: how to send an utterance and read cumulative batch counters."""

    name: str
    send: Callable[[Utterance], Awaitable[str]]
    metrics_text: Callable[[], Awaitable[str]]
    """The service's Prometheus exposition text (cumulative counters; the bench takes deltas)."""


async def measure(args: argparse.Namespace, utterances: list[Utterance], targets: list[Target]) -> list[Row]:
    """For each N, run every target in turn, ``--repeats`` times in alternating order (A B, B A…) so
    that drifting machine load hits both alike; a row pools all repeats of its (N, target)."""
    pooled: dict[tuple[int, str], tuple[list[float], list[float]]] = {}
    for t in targets:
        await drive(t.send, utterances, 2, 4)  # warm connections, caches, allocator
        texts = await asyncio.gather(*(t.send(u) for u in utterances))  # all at once: batched
        exact = sum(_norm(u.text) == _norm(x) for u, x in zip(utterances, texts, strict=True) if u.text)
        log.info(
            "%s: %d/%d transcripts equal their reference (normalised); e.g. %r",
            t.name,
            exact,
            sum(bool(u.text) for u in utterances),
            texts[0],
        )
    for n in args.concurrency:
        for rep in range(args.repeats):
            for t in targets if rep % 2 == 0 else targets[::-1]:
                before = await t.metrics_text()
                lat, audio, wall = await drive(t.send, utterances, n, max(args.requests, 2 * n))
                after = await t.metrics_text()
                (b0, w0), (b1, w1) = _batch_counts(before), _batch_counts(after)
                lats, sums = pooled.setdefault((n, t.name), ([], [0.0, 0.0, 0.0, 0.0]))
                lats.extend(lat)
                for i, v in enumerate((audio, wall, b1 - b0, w1 - w0)):
                    sums[i] += v
                log.info(
                    "N=%d %s: %.2f req/s; mean ms per batch: %s",
                    n,
                    t.name,
                    len(lat) / wall,
                    _stage_means(before, after),
                )
    return [
        _row(n, name, lats, audio, wall, windows / max(batches, 1))
        for (n, name), (lats, (audio, wall, batches, windows)) in pooled.items()
    ]


async def run_http(args: argparse.Namespace, utterances: list[Utterance], configs: list[tuple[str, int]]) -> list[Row]:
    """HTTP mode: one server subprocess per configuration, clients on the raw PCM16 endpoint."""
    import httpx

    async with contextlib.AsyncExitStack() as stack:
        targets = []
        for name, max_batch in configs:
            port = _free_port()
            env = {
                **os.environ,
                "STT_PORT": str(port),
                "STT_MAX_BATCH": str(max_batch),
                "STT_BATCH_WINDOW_MS": str(args.window_ms),
                "STT_MAX_QUEUE": "4096",
                "STT_DEVICE": args.device,
                "STT_COMPUTE_TYPE": args.compute_type,
                "STT_CPU_THREADS": str(args.threads),
                "STT_FEATURE_THREADS": str(args.feature_threads),
                "STT_LOG_LEVEL": "warning",
            }
            if args.model:
                env["STT_MODEL"] = args.model
            proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.stt", cwd=ROOT, env=env)
            stack.push_async_callback(_stop, proc)
            limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
            client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600, limits=limits)
            )
            await _wait_ready(client)
            targets.append(Target(name, _http_send(client), _http_metrics(client)))
        return await measure(args, utterances, targets)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    proc.terminate()
    await asyncio.wait_for(proc.wait(), 30)


async def _wait_ready(client: Any) -> None:
    import httpx

    for _ in range(600):
        try:
            if (await client.get("/ready")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("STT server did not become ready")


def _http_send(client: Any) -> Callable[[Utterance], Awaitable[str]]:
    async def send(u: Utterance) -> str:
        r = await client.post(
            "/v1/audio/transcriptions/raw",
            params={"sample_rate": 16000},
            content=u.pcm.tobytes(),
            headers={"Content-Type": "application/octet-stream"},
        )
        r.raise_for_status()
        return str(r.json()["text"])

    return send


def _http_metrics(client: Any) -> Callable[[], Awaitable[str]]:
    async def scrape() -> str:
        return str((await client.get("/metrics/")).text)

    return scrape


async def run_direct(
    args: argparse.Namespace, utterances: list[Utterance], configs: list[tuple[str, int]]
) -> list[Row]:
    """Direct mode: engine + scheduler in-process (no HTTP), one model shared by both configurations."""
    from prometheus_client import generate_latest

    from services.stt.config import STTSettings
    from services.stt.engine import WhisperEngine
    from services.stt.scheduler import BatchScheduler

    kw = {"model": args.model} if args.model else {}
    settings = STTSettings(
        device=args.device,
        compute_type=args.compute_type,
        cpu_threads=args.threads,
        feature_threads=args.feature_threads,
        **kw,
    )
    engine = WhisperEngine(settings)
    warm = engine.warmup(min(8, max(b for _, b in configs)))
    log.info("loaded in %.2fs on %s; warm-up %.2fs", engine.load_seconds, engine.device, warm)
    floats = {u.name: u.pcm.astype(np.float32) / 32768.0 for u in utterances}
    targets, schedulers = [], []
    for name, max_batch in configs:
        sched = BatchScheduler(engine.run_batch, max_batch=max_batch, batch_window_ms=args.window_ms, max_queue=1 << 16)
        sched.start()
        schedulers.append(sched)

        async def send(u: Utterance, sched: BatchScheduler = sched) -> str:
            item = await engine.prepare_async(floats[u.name])
            return (await sched.submit(item)).text

        async def scrape() -> str:
            return generate_latest().decode()

        targets.append(Target(name, send, scrape))
    try:
        return await measure(args, utterances, targets)
    finally:
        for sched in schedulers:
            await sched.close()


# ----------------------------------------------------------------------------------- report
def table(rows: list[Row]) -> str:
    """Markdown table: both configurations per N side by side, and batched/batch-1 ratios."""
    configs = list(dict.fromkeys(r.config for r in rows))
    head = "| N | config | requests | req/s | audio-s/s | p50 ms | p95 ms | mean batch |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for n in dict.fromkeys(r.concurrency for r in rows):
        by = {r.config: r for r in rows if r.concurrency == n}
        for c in configs:
            r = by[c]
            lines.append(
                f"| {n} | {c} | {r.requests} | {r.rps:.2f} | {r.audio_s_per_s:.1f} | {r.p50_ms:.0f} | "
                f"{r.p95_ms:.0f} | {r.mean_batch:.1f} |"
            )
        if len(configs) == 2:
            a, b = by[configs[0]], by[configs[1]]
            lines.append(
                f"| {n} | **ratio** {configs[1]}/{configs[0]} | | **{b.rps / a.rps:.2f}×** | "
                f"{b.audio_s_per_s / a.audio_s_per_s:.2f}× | {b.p50_ms / a.p50_ms:.2f}× | "
                f"{b.p95_ms / a.p95_ms:.2f}× | |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run both configurations, write the table to stdout (and JSON if asked)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["http", "direct"], default="http")
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16, 64])
    p.add_argument("--requests", type=int, default=32, help="requests per level (at least 2 per client)")
    p.add_argument("--repeats", type=int, default=1, help="alternating A/B rounds per N, pooled")
    p.add_argument("--max-batch", type=int, default=16, help="the batched configuration's STT_MAX_BATCH")
    p.add_argument("--window-ms", type=float, default=10.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--compute-type", default="int8")
    p.add_argument("--threads", type=int, default=2, help="CTranslate2 CPU threads (STT_CPU_THREADS)")
    p.add_argument("--feature-threads", type=int, default=0, help="STT_FEATURE_THREADS (0 = auto)")
    p.add_argument("--model", default=None, help="model folder or size name (default: STT_MODEL / models/)")
    p.add_argument("--audio-dir", type=Path, default=ROOT / "out" / "bench-audio")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    utterances = load_utterances(args.audio_dir)
    lengths = [u.seconds for u in utterances]
    configs = [("batch=1", 1), (f"batched≤{args.max_batch}", args.max_batch)]
    runner = run_http if args.mode == "http" else run_direct
    rows = asyncio.run(runner(args, utterances, configs))
    header = (
        f"STT bench — mode={args.mode} device={args.device} compute={args.compute_type} "
        f"threads={args.threads} feature-threads={args.feature_threads or 'auto'} "
        f"window={args.window_ms:g} ms repeats={args.repeats}; {len(utterances)} utterances "
        f"{min(lengths):.1f}–{max(lengths):.1f} s"
    )
    sys.stdout.write(header + "\n\n" + table(rows) + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"header": header, "rows": [asdict(r) for r in rows]}, indent=1))


if __name__ == "__main__":
    main()
