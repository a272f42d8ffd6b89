"""The LLM traffic of N concurrent phone calls, against an OpenAI-compatible server (vLLM).

Each simulated call sends what the gateway sends (the demo agent's system prompt from
``gateway/agents/defaults.py``, the greeting as the first assistant turn, the history so far):
a one-token prewarm at call start, then one streamed reply per caller line of
:data:`bench.load.SCRIPT` (``max_tokens`` 80, temperature 0.3, the gateway's defaults) with a
pause in between that stands for the caller speaking and the reply playing (``--turn-gap-s``,
±30 % jitter), then the post-call extraction (JSON object, ``max_tokens`` 400). Calls start
spread over ``--ramp-s``. It measures, per level, time to first token (TTFT) of the replies,
time per output token after the first, reply lengths (tokens), the extractions' durations and
errors. Nothing but the LLM runs, so the figures say what the LLM stage costs at that many calls
(the end-to-end capacity run is ``bench.capacity --llm vllm``).

Usage: ``python -m bench.llm_load --url http://127.0.0.1:8000 --levels 50,100,200,300
--json docs/bench-llm-load.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.llm_warmup import stream_chat
from bench.meters import percentiles
from bench.script import SCRIPT

ROOT = Path(__file__).resolve().parents[1]

# The demo agent's prompt, loaded from its file alone: ``import gateway`` builds the whole app (FastAPI,
# SQLAlchemy), which a GPU box that carries only vLLM does not have.
_spec = importlib.util.spec_from_file_location("_agent_defaults", ROOT / "gateway" / "agents" / "defaults.py")
assert _spec is not None and _spec.loader is not None
_defaults = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_defaults)
default_system_prompt = _defaults.default_system_prompt

GREETING = "Thanks for calling Acme Plumbing, this is the virtual receptionist. How can I help you today?"
EXTRACT = (
    "Summarise this phone call as a JSON object with the keys name, phone, address, problem, "
    "urgency (low|medium|high|emergency) and next_step. Use null where the call did not say."
)


async def _call(
    client: httpx.AsyncClient, url: str, model: str, start_s: float, gap_s: float, rng: random.Random
) -> dict[str, Any]:
    await asyncio.sleep(start_s)
    out: dict[str, Any] = {"replies": [], "error": None}
    history: list[dict[str, str]] = [
        {"role": "system", "content": default_system_prompt()},
        {"role": "assistant", "content": GREETING},
    ]
    try:
        await client.post(
            f"{url}/v1/chat/completions",
            json={"model": model, "messages": [*history, {"role": "user", "content": ""}], "max_tokens": 1},
        )
        for line in SCRIPT:
            await asyncio.sleep(gap_s * rng.uniform(0.7, 1.3))
            history.append({"role": "user", "content": line})
            body = {"model": model, "messages": history, "max_tokens": 80, "temperature": 0.3}
            ttft, total, chunks, text = await stream_chat(client, url, body)
            out["replies"].append({"ttft_s": ttft, "total_s": total, "chunks": chunks, "text": text})
            history.append({"role": "assistant", "content": text})
        t0 = time.perf_counter()
        transcript = "\n".join(f"{m['role']}: {m['content']}" for m in history[1:])
        resp = await client.post(
            f"{url}/v1/chat/completions",
            json={
                "model": model,
                "messages": [{"role": "system", "content": EXTRACT}, {"role": "user", "content": transcript}],
                "max_tokens": 400,
                "temperature": 0,
                "response_format": {"type": "json_object"},
            },
        )
        resp.raise_for_status()
        out["extraction_s"] = time.perf_counter() - t0
        out["extraction_tokens"] = resp.json()["usage"]["completion_tokens"]
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        out["error"] = repr(exc)
    return out


async def run_level(url: str, model: str, calls: int, ramp_s: float, gap_s: float, seed: int) -> dict[str, Any]:
    """``calls`` concurrent calls' LLM traffic; returns the level's summary."""
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=calls * 2 + 8, max_keepalive_connections=calls * 2 + 8)
    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=120.0, limits=limits) as client:
        results = await asyncio.gather(
            *(
                _call(client, url, model, rng.uniform(0, ramp_s), gap_s, random.Random(seed * 1000 + i))
                for i in range(calls)
            )
        )
    replies = [r for res in results for r in res["replies"]]
    tpot = [(r["total_s"] - r["ttft_s"]) / (r["chunks"] - 1) * 1000 for r in replies if r["chunks"] > 1]
    return {
        "calls": calls,
        "wall_s": time.perf_counter() - t0,
        "replies": len(replies),
        "errors": sum(1 for res in results if res["error"]),
        "errors_sample": [res["error"] for res in results if res["error"]][:3],
        "ttft_ms": percentiles([r["ttft_s"] * 1000 for r in replies]),
        "time_per_output_token_ms": percentiles(tpot),
        "reply_chunks": percentiles([float(r["chunks"]) for r in replies]),
        "extraction_s": percentiles([res["extraction_s"] for res in results if "extraction_s" in res]),
        "sample_replies": [r["text"] for r in replies[:3]],
    }


def main() -> int:
    """CLI: run the levels, print a table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--levels", default="10,50,100")
    parser.add_argument("--ramp-s", type=float, default=8.0)
    parser.add_argument("--turn-gap-s", type=float, default=8.0, help="caller speech + reply playback per turn")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    model = httpx.get(f"{args.url}/v1/models", timeout=30).json()["data"][0]["id"]
    levels = []
    sys.stdout.write(
        "| calls | replies | errors | TTFT p50 | TTFT p95 | TTFT p99 | ms/token p50 | tokens p50 | extraction p95 s |\n"
    )
    sys.stdout.write("|---|---|---|---|---|---|---|---|---|\n")
    for n in [int(x) for x in args.levels.split(",")]:
        lv = asyncio.run(run_level(args.url, model, n, args.ramp_s, args.turn_gap_s, seed=n))
        levels.append(lv)
        t, e = lv["ttft_ms"], lv["extraction_s"]
        sys.stdout.write(
            f"| {n} | {lv['replies']} | {lv['errors']} | {t['p50']:.0f} | {t['p95']:.0f} | {t['p99']:.0f} | "
            f"{lv['time_per_output_token_ms']['p50']:.1f} | {lv['reply_chunks']['p50']:.0f} | "
            f"{(e['p95'] or float('nan')):.1f} |\n"
        )
        sys.stdout.flush()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {"url": args.url, "model": model, "command": " ".join(sys.argv), "levels": levels}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
