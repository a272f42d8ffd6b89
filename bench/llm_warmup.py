"""Warm an OpenAI-compatible LLM server (vLLM) before it takes calls, and say what it is.

vLLM's first concurrent batch after a start stalls for seconds (CUDA-graph capture of new batch
shapes, the sampler's first compile; ``../shared/gpu/README.md`` saw ~6.5 s on the H200) while
single requests do not trigger it, so a benchmark that starts with a burst of calls would time that
stall. :func:`warm_up` sends ``concurrency`` streaming chat completions at once, twice, with a
system prompt of the gateway's size (~600 tokens), then one plain request whose text shows that
the weights are real.

Usage: ``python -m bench.llm_warmup --url http://127.0.0.1:8000 --concurrency 64``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import httpx

SYSTEM = (
    "You are the phone receptionist of Rivera Plumbing, a family plumbing business. Answer in one "
    "or two short sentences, warmly and plainly, as people speak on the phone. "
) * 12
"""About 600 tokens of system prompt, the size of the gateway's (a prefix shared by every call)."""
QUESTION = "Hi, my kitchen sink is leaking under the cabinet. Can you send a plumber today?"


async def stream_chat(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> tuple[float, float, int, str]:
    """One streamed chat completion (``body`` without ``stream``) to ``url`` (no ``/v1``).

    Returns:
        (time to first content token s, total s, content chunks, text); TTFT is NaN without content.

    Raises:
        httpx.HTTPError: the server refused or dropped the request.
    """
    t0 = time.perf_counter()
    ttft, chunks, parts = float("nan"), 0, []
    async with client.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0].get("delta", {}).get("content")
            if delta:
                if chunks == 0:
                    ttft = time.perf_counter() - t0
                chunks += 1
                parts.append(delta)
    return ttft, time.perf_counter() - t0, chunks, "".join(parts)


async def _one(client: httpx.AsyncClient, url: str, model: str, i: int, max_tokens: int) -> float:
    """One warm-up request; returns its time to first token (s)."""
    body = {
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"{QUESTION} ({i})"}],
    }
    return (await stream_chat(client, url, body))[0]


async def _burst(url: str, model: str, concurrency: int, max_tokens: int) -> list[float]:
    async with httpx.AsyncClient(timeout=120.0, limits=httpx.Limits(max_connections=concurrency + 4)) as client:
        return list(await asyncio.gather(*(_one(client, url, model, i, max_tokens) for i in range(concurrency))))


def warm_up(url: str, concurrency: int = 64, max_tokens: int = 16) -> dict[str, Any]:
    """Warm the server at ``url`` (no ``/v1``) with two bursts; return what it serves.

    Returns:
        ``{"version", "model", "bursts": [{"s", "ttft_p50_s", "ttft_max_s"}, ...], "sample"}``.

    Raises:
        httpx.HTTPError: the server is unreachable or refuses a request.
    """
    url = url.rstrip("/")
    with httpx.Client(timeout=30.0) as client:
        model = client.get(f"{url}/v1/models").json()["data"][0]["id"]
        try:
            version = client.get(f"{url}/version").json().get("version", "unknown")
        except (httpx.HTTPError, ValueError):
            version = "unknown"  # not vLLM (llama.cpp has no /version)
    bursts = []
    for _ in range(2 if concurrency > 0 else 0):
        t0 = time.perf_counter()
        ttfts = sorted(asyncio.run(_burst(url, model, concurrency, max_tokens)))
        bursts.append({"s": time.perf_counter() - t0, "ttft_p50_s": ttfts[len(ttfts) // 2], "ttft_max_s": ttfts[-1]})
    with httpx.Client(timeout=60.0) as client:
        reply = client.post(
            f"{url}/v1/chat/completions",
            json={
                "model": model,
                "max_tokens": 60,
                "temperature": 0,
                "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
            },
        ).json()
    return {"version": version, "model": model, "bursts": bursts, "sample": reply["choices"][0]["message"]["content"]}


def main() -> int:
    """CLI: warm the server and print what it said (JSON)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    sys.stdout.write(json.dumps(warm_up(args.url, args.concurrency), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
