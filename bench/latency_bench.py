"""``make bench-latency``: voice-to-voice latency per stage over many real turns (real models).

Starts the whole stack as processes on free ports (or uses ``--gateway-url``), places calls with
multi-turn caller scripts (four different customers in turn, ``--callers varied``; or the same one
every call, ``--callers same``; Kokoro voice am_michael, 8 kHz μ-law, real time, with pauses between
turns) and reads each turn's server-side latencies from the gateway (``GET /calls/{sid}``):
endpointing, STT, LLM time to first token, LLM time to the first sentence's text, TTS first audio,
voice-to-voice; plus voice-to-voice as the simulated caller heard it. Prints p50/p95 per stage and writes JSON.

Usage: ``python -m bench.latency_bench [--turns 20] [--callers varied|same] [--json docs/bench-latency.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from shared.audio import TELEPHONY_RATE_HZ, resample, split_frames, ulaw_encode
from tools.stack import Ports, Stack
from tools.twilio_sim import SimulatedCall, fetch_call

SCRIPT = [
    "Hi, the pipe under my kitchen sink is leaking. Can somebody come out today?",
    "My name is John Smith.",
    "I live at 42 Oak Street in Springfield.",
    "How much does a repair usually cost?",
    "Great, thank you. Tomorrow morning works for me.",
]
"""The caller script of ``--callers same``: every call says these five lines."""
CALLERS = [
    SCRIPT,
    [
        "Hello, my water heater stopped working and there is no hot water. Can you send someone?",
        "This is Maria Lopez.",
        "The address is 17 Elm Avenue in Shelbyville.",
        "What do you charge to look at a water heater?",
        "Okay, thanks. Friday afternoon is good for me.",
    ],
    [
        "Hi there, my toilet keeps running and the bathroom floor is wet. Could a plumber come by?",
        "My name is David Chen.",
        "I am at 305 Pine Road, apartment 2.",
        "Is there a charge for the visit?",
        "Perfect. Any time on Monday works.",
    ],
    [
        "Good morning, the shower drain is blocked and the water will not go down. Are you open today?",
        "It's Sarah Johnson.",
        "We live at 9 Maple Drive, near the school.",
        "About how long does a job like that take?",
        "Thanks a lot. This evening would be best.",
    ],
]
"""The four callers of ``--callers varied`` (the default): different problems, names and addresses,
as different customers call; call *i* uses caller *i* mod 4. The agent's replies then repeat across
calls only where a business's replies do (openers, prices), not because the callers say the same."""
STAGES = ["endpointing_ms", "stt_ms", "llm_ttft_ms", "llm_first_text_ms", "tts_first_audio_ms", "voice_to_voice_ms"]


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def synthesize(tts_url: str, text: str) -> tuple[list[bytes], float]:
    """Caller audio via the TTS service: (20 ms μ-law frames, speech seconds)."""
    resp = httpx.post(
        f"{tts_url}/v1/audio/speech", json={"input": text, "voice": "am_michael", "response_format": "pcm"}, timeout=120
    )
    resp.raise_for_status()
    pcm = np.frombuffer(resp.content, dtype="<i2").astype(np.int16)
    frames = split_frames(ulaw_encode(resample(pcm, 24000, TELEPHONY_RATE_HZ)))
    return frames, len(frames) * 0.02


async def one_call(gateway_url: str, lines: list[tuple[list[bytes], float]]) -> tuple[dict[str, Any], list[float]]:
    """Speak each line after the previous reply has played; returns (call record, caller-side v2v ms)."""
    call = SimulatedCall(gateway_url)
    await call.connect()
    heard: list[float] = []
    try:
        await call.wait_greeting()
        for frames, seconds in lines:
            replies_before = sum(m.endswith(":end") for m in call.result.marks_received)
            call.result.reply_first_audio_at = None
            call.result.caller_speech_end_at = time.monotonic() + seconds
            call.say(frames)
            await asyncio.sleep(seconds)

            def replied(before: int = replies_before) -> bool:
                return sum(m.endswith(":end") for m in call.result.marks_received) > before

            await call.wait_until(replied, 90, "the reply")
            await call.wait_greeting(timeout_s=90, settle_s=0.8)  # reply played, short human pause
            if call.result.voice_to_voice_ms is not None:
                heard.append(call.result.voice_to_voice_ms)
    finally:
        await call.hang_up()
    return await fetch_call(gateway_url, call.call_sid), heard


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0–100), linear interpolation (numpy)."""
    return float(np.percentile(values, q))


def main() -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--gateway-url", default=None, help="use a running stack instead of starting one")
    parser.add_argument("--tts-url", default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--callers",
        choices=["varied", "same"],
        default="varied",
        help="varied: four different callers in turn; same: every call says the same five lines",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    stack = None
    if args.gateway_url is None:
        # A fresh database each run: calls of an earlier (or interrupted) run must not leave their
        # post-call extractions and webhooks queued in front of this run's turns on the one LLM.
        data_dir = Path(tempfile.mkdtemp(prefix="bench-latency-data-"))
        stack = Stack(
            Ports.free(), reuse=False, log_dir=Path("var/bench-latency-logs"), env={"GATEWAY_DATA_DIR": str(data_dir)}
        )
        stack.start()
        gateway_url, tts_url = stack.gateway_url, f"http://127.0.0.1:{stack.ports.tts}"
    else:
        gateway_url, tts_url = args.gateway_url, args.tts_url or "http://127.0.0.1:8002"
    try:
        scripts = CALLERS if args.callers == "varied" else [SCRIPT]
        callers = [[synthesize(tts_url, text) for text in script] for script in scripts]
        stages: dict[str, list[float]] = {s: [] for s in STAGES}
        heard: list[float] = []
        replies: list[dict[str, Any]] = []
        turns = 0
        calls = 0
        while turns < args.turns:
            lines = callers[calls % len(callers)]
            calls += 1
            take = lines[: min(len(lines), args.turns - turns)]
            record, caller_v2v = asyncio.run(one_call(gateway_url, take))
            heard += caller_v2v
            for turn in record["turns"]:
                if turn["role"] == "assistant" and turn.get("reply_id", "").startswith("reply"):
                    replies.append(
                        {
                            "text": turn.get("text", ""),
                            "interrupted": bool(turn.get("interrupted")),
                            "latency_ms": turn.get("latency_ms", {}),
                        }
                    )
                    for s in STAGES:
                        if s in turn.get("latency_ms", {}):
                            stages[s].append(turn["latency_ms"][s])
            turns += len(take)
            _out(f"  call {record['call_sid'][:10]}…: {len(take)} turns")
    finally:
        if stack is not None:
            stack.stop()
            shutil.rmtree(data_dir, ignore_errors=True)
    rows = [(s.removesuffix("_ms"), v) for s, v in stages.items()] + [("voice_to_voice (caller)", heard)]
    _out(f"\nvoice-to-voice latency per stage, {turns} turns (ms)")
    _out(f"| {'stage':<24} | {'n':>3} | {'p50':>7} | {'p95':>7} | {'mean':>7} |")
    _out(f"|{'-' * 26}|{'-' * 5}|{'-' * 9}|{'-' * 9}|{'-' * 9}|")
    summary = {}
    for name, values in rows:
        if values:
            summary[name] = {
                "n": len(values),
                "p50": pct(values, 50),
                "p95": pct(values, 95),
                "mean": statistics.fmean(values),
            }
            _out(
                f"| {name:<24} | {len(values):>3} | {pct(values, 50):>7.0f} | {pct(values, 95):>7.0f} | "
                f"{statistics.fmean(values):>7.0f} |"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        body = {"turns": turns, "callers": args.callers, "stages_ms": summary, "replies": replies}
        args.json.write_text(json.dumps(body, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
