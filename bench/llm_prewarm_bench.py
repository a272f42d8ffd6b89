"""First-turn LLM time to first token on the CPU stand-in, cold vs prewarmed (``GATEWAY_LLM__PREWARM``).

llama.cpp (llama-cpp-python) keeps the KV cache of its last prompt only. After another prompt (the
previous call's extraction), a call's first turn prefills the whole system prompt again; the
gateway's prewarm (one token of system prompt + greeting, sent while the greeting plays) puts that
prefix back. Each repetition: an unrelated prompt (the eviction), then the first turn's request,
cold; the eviction, the prewarm, the first turn again. Prints TTFT per repetition and the medians.

Usage: ``python -m bench.llm_prewarm_bench [--url http://127.0.0.1:8000/v1] [--reps 3]``
(start the stand-in first: ``make run-llm``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from gateway.agents.defaults import default_system_prompt
from gateway.config import GatewaySettings
from gateway.conversation.llm_tools import openai_tools
from gateway.conversation.speaker import aclose_iterator
from gateway.upstream.llm import LLMClient

GREETING = "Thanks for calling Acme Plumbing, this is Sam. How can I help you today?"
FIRST_TURN = "Hi, the pipe under my kitchen sink is leaking. Can somebody come out today?"
EVICT = [
    {"role": "system", "content": "Extract the caller's name, address and problem as JSON."},
    {"role": "user", "content": "Caller: my name is Ann Lee, I live at 7 Elm Road and my boiler is broken."},
]


async def ttft_ms(client: LLMClient, messages: list[dict[str, str]], tools: list[dict] | None) -> float:
    """Milliseconds from the request to its first streamed delta (the rest is dropped)."""
    t0 = time.perf_counter()
    stream = client.stream(messages, tools)
    try:
        await anext(stream)
        return (time.perf_counter() - t0) * 1000
    finally:
        await aclose_iterator(stream)


async def run(url: str, reps: int) -> dict[str, list[float]]:
    """``reps`` cold and prewarmed first turns against ``url``; TTFTs in ms."""
    settings = GatewaySettings()
    tools = openai_tools(settings.agent.tools) or None
    system = {"role": "system", "content": default_system_prompt()}
    greeting = {"role": "assistant", "content": GREETING}
    first = [system, greeting, {"role": "user", "content": FIRST_TURN}]
    client = LLMClient(url, settings.llm.model, timeout_s=120, max_tokens=40)
    out: dict[str, list[float]] = {"cold": [], "prewarmed": []}
    try:
        for _ in range(reps):
            await client.prewarm(EVICT)
            out["cold"].append(await ttft_ms(client, first, tools))
            await client.prewarm(EVICT)
            await client.prewarm([system, greeting, {"role": "user", "content": ""}], tools)
            out["prewarmed"].append(await ttft_ms(client, first, tools))
    finally:
        await client.close()
    return out


def main() -> int:
    """Run and print the table."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", default="http://127.0.0.1:8000/v1")
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args()
    res = asyncio.run(run(a.url, a.reps))
    sys.stdout.write("| first turn | TTFT per repetition (ms) | median (ms) |\n|---|---|---|\n")
    for name, values in res.items():
        sys.stdout.write(f"| {name} | {', '.join(f'{v:.0f}' for v in values)} | {statistics.median(values):.0f} |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
