"""``make call``: one simulated Twilio call through the whole stack, with a printed summary.

Starts Redis and every service as local processes (or reuses those of ``make dev``), places
the call with :class:`~tools.twilio_sim.SimulatedCall`, prints the caller transcript, the
corrected transcript, the agent's reply, per-stage latencies, and writes the agent's audio to a
WAV. Exits 1 if any stage failed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from shared.audio import TELEPHONY_RATE_HZ, wav_bytes
from tools.stack import Ports, Stack, http_healthy
from tools.twilio_sim import CallResult, SimulatedCall, fetch_call

STAGE_LABELS = {
    "endpointing_ms": "endpointing",
    "stt_ms": "STT",
    "llm_ttft_ms": "LLM first token",
    "tts_first_audio_ms": "TTS first audio",
    "voice_to_voice_ms": "voice-to-voice",
}


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def wait_webhook(sink_url: str, call_sid: str, timeout_s: float = 180.0) -> dict[str, Any] | None:
    """Poll the development webhook sink until it has received ``call_sid``'s ``call.completed``
    (it is sent once post-call extraction is done: seconds after hang-up on CPU)."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                hooks = (await client.get(sink_url, timeout=2)).json()
            except httpx.HTTPError:
                return None
            for hook in hooks:
                if hook.get("call_sid") == call_sid and hook.get("event", "call.completed") == "call.completed":
                    return dict(hook)
            await asyncio.sleep(0.2)
    return None


def summarize(result: CallResult, record: dict[str, Any], webhook: dict[str, Any] | None, out: Path) -> list[str]:
    """Print the call summary; return the list of failed checks (empty when all is well)."""
    failures: list[str] = []
    turns = record.get("turns", [])
    user = next((t for t in turns if t["role"] == "user"), None)
    reply = next((t for t in turns if t["role"] == "assistant" and t.get("reply_id", "").startswith("reply")), None)
    greeting = next((t for t in turns if t.get("reply_id", "").startswith("greeting")), None)
    _out(f"Switchboard call {result.call_sid}  from {record.get('from')} to {record.get('to')}")
    _out(f"  greeting             : {greeting['text'] if greeting else '(none)'}")
    _out(f"  caller transcript    : {user['raw_text'] if user else '(none)'}")
    _out(f"  corrected transcript : {user['text'] if user else '(none)'}")
    _out(f"  agent reply          : {reply['text'] if reply else '(none)'}")
    if user is None or not user.get("raw_text"):
        failures.append("no caller transcript")
    if reply is None or not reply.get("text"):
        failures.append("no agent reply")
    latency = (reply or {}).get("latency_ms", {})
    _out("  latency (server side, ms):")
    for key, label in STAGE_LABELS.items():
        value = latency.get(key)
        _out(f"    {label:<18} {value:>8.0f}" if value is not None else f"    {label:<18}   (missing)")
        if value is None:
            failures.append(f"no {label} latency")
    if result.voice_to_voice_ms is not None:
        _out(f"    {'voice-to-voice*':<18} {result.voice_to_voice_ms:>8.0f}   (*as the caller heard it)")
    pcm = result.agent_pcm16()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(wav_bytes(pcm, TELEPHONY_RATE_HZ))
    _out(f"  agent audio          : {out} ({pcm.size / TELEPHONY_RATE_HZ:.1f}s, 8 kHz PCM16 WAV from μ-law)")
    _out(f"  marks                : {len(result.marks_received)} received, {len(result.marks_echoed)} echoed")
    if result.reply_bytes == 0:
        failures.append("no reply audio")
    if not result.marks_received:
        failures.append("no marks")
    if webhook is not None:
        _out(
            f"  webhook              : delivered ({len(webhook.get('turns', []))} turns, "
            f"{webhook.get('duration_seconds')}s)"
        )
    else:
        _out("  webhook              : NOT received")
        failures.append("no webhook")
    return failures


async def place_call(gateway_url: str, audio: Path, webhook_sink: str, out: Path) -> int:
    """Run the call and print the summary; returns the process exit code."""
    call = SimulatedCall(gateway_url)
    try:
        result = await call.run(audio)
    except (TimeoutError, OSError, httpx.HTTPError) as exc:
        _out(f"call failed: {exc!r}")
        return 1
    record = await fetch_call(gateway_url, result.call_sid)
    webhook = await wait_webhook(webhook_sink, result.call_sid)
    failures = summarize(result, record, webhook, out)
    if failures:
        _out("FAILED: " + "; ".join(failures))
        return 1
    _out("OK")
    return 0


def main() -> int:
    """CLI entry point (``python -m tools.call --audio X --out Y``)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--audio", type=Path, default=Path("models/audio/caller_leak.wav"))
    parser.add_argument("--out", type=Path, default=Path("out/reply.wav"))
    parser.add_argument("--log-dir", type=Path, default=Path("var/log"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not args.audio.is_file():
        _out(f"no such audio file: {args.audio} (run `make models` for the default caller)")
        return 2
    ports = Ports()
    stack = Stack(ports, reuse=True, log_dir=args.log_dir)
    sink = f"http://127.0.0.1:{ports.webhook}/webhooks"
    if http_healthy(ports.gateway):
        logging.getLogger("call").info("using the running gateway at %s", stack.gateway_url)
        return asyncio.run(place_call(stack.gateway_url, args.audio, sink, args.out))
    try:
        stack.start()
    except RuntimeError as exc:
        _out(f"could not start the stack: {exc} (logs in {args.log_dir})")
        return 1
    try:
        return asyncio.run(place_call(stack.gateway_url, args.audio, sink, args.out))
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
