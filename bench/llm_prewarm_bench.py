"""First-turn LLM time to first token on the CPU stand-in: after another prompt, prewarmed, prompt cache.

llama.cpp (llama-cpp-python) keeps the KV cache of its last prompt only. After another prompt (the
previous call's extraction), a call's first turn prefills the whole system prompt again. Two fixes:
the gateway's prewarm (``GATEWAY_LLM__PREWARM``: one token of system prompt + greeting, sent while
the greeting plays) puts that prefix back; the stand-in's prompt-state cache
(``LLM_PROMPT_CACHE_MB``) restores the saved state with the longest common prefix.

First a first turn on a server that has seen nothing else (``nothing cached``); then each
repetition: an unrelated prompt (the eviction) and the first turn again (``after another prompt``);
the eviction, the prewarm and the first turn (``prewarmed``). Every request runs to its end (as a
call's turns do, so the cache saves its state); TTFT is the time to its first streamed delta.

Usage: ``python -m bench.llm_prewarm_bench [--url http://127.0.0.1:8000/v1] [--reps 3]`` against a
running stand-in (``make run-llm``), or start one stand-in per ``--stand-in`` on a free port, one
after the other, with that environment, and print their cache log lines:
``--stand-in "LLM_PROMPT_CACHE_MB=0 LLM_LOGITS_ALL=true" --stand-in LLM_PROMPT_CACHE_MB=0
--stand-in LLM_PROMPT_CACHE_MB=128``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gateway.agents.defaults import default_system_prompt
from gateway.config import GatewaySettings
from gateway.conversation.llm_tools import openai_tools
from gateway.conversation.speaker import aclose_iterator
from gateway.upstream.llm import LLMClient
from tools.stack import Ports, Stack

GREETING = "Thanks for calling Acme Plumbing, this is Sam. How can I help you today?"
FIRST_TURN = "Hi, the pipe under my kitchen sink is leaking. Can somebody come out today?"
EVICT = [
    {"role": "system", "content": "Extract the caller's name, address and problem as JSON."},
    {"role": "user", "content": "Caller: my name is Ann Lee, I live at 7 Elm Road and my boiler is broken."},
]


async def ttft_ms(client: LLMClient, messages: list[dict[str, str]], tools: list[dict] | None) -> float:
    """Milliseconds from the request to its first streamed delta (the stream is read to its end)."""
    t0 = time.perf_counter()
    first: float | None = None
    stream = client.stream(messages, tools)
    try:
        async for _ in stream:
            if first is None:
                first = (time.perf_counter() - t0) * 1000
    finally:
        await aclose_iterator(stream)
    return first if first is not None else (time.perf_counter() - t0) * 1000


async def run(url: str, reps: int) -> dict[str, list[float]]:
    """A first turn against ``url``, then ``reps`` after another prompt and prewarmed; TTFTs in ms."""
    settings = GatewaySettings()
    tools = openai_tools(settings.agent.tools) or None
    system = {"role": "system", "content": default_system_prompt()}
    greeting = {"role": "assistant", "content": GREETING}
    first = [system, greeting, {"role": "user", "content": FIRST_TURN}]
    client = LLMClient(url, settings.llm.model, timeout_s=120, max_tokens=40)
    out: dict[str, list[float]] = {"nothing cached": [], "after another prompt": [], "prewarmed": []}
    try:
        await client.prewarm(EVICT)
        out["nothing cached"].append(await ttft_ms(client, first, tools))
        for _ in range(reps):
            await client.prewarm(EVICT)
            out["after another prompt"].append(await ttft_ms(client, first, tools))
            await client.prewarm(EVICT)
            await client.prewarm([system, greeting, {"role": "user", "content": ""}], tools)
            out["prewarmed"].append(await ttft_ms(client, first, tools))
    finally:
        await client.close()
    return out


def run_started(env: dict[str, str], reps: int) -> tuple[dict[str, list[float]], list[str]]:
    """:func:`run` against a stand-in started with the extra environment ``env``; also its cache log lines."""
    log_dir = Path(tempfile.mkdtemp(prefix="llm-prewarm-bench-"))
    stack = Stack(Ports.free(), reuse=False, log_dir=log_dir, only={"llm"}, env=env)
    stack.start(timeout_s=180)
    try:
        res = asyncio.run(run(f"http://127.0.0.1:{stack.ports.llm}/v1", reps))
    finally:
        stack.stop()
    lines = (log_dir / "llm.log").read_text(errors="replace").splitlines()
    return res, [line for line in lines if "prompt cache:" in line]


def main() -> int:
    """Run and print the table."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", default="http://127.0.0.1:8000/v1")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument(
        "--stand-in",
        action="append",
        default=[],
        metavar="'VAR=value …'",
        help="start a stand-in with this environment (repeatable) instead of using --url",
    )
    a = p.parse_args()
    results: list[tuple[str, dict[str, list[float]]]] = []
    if not a.stand_in:
        results.append(("running", asyncio.run(run(a.url, a.reps))))
    for spec in a.stand_in:
        env = dict(item.split("=", 1) for item in spec.split())
        res, cache_log = run_started(env, a.reps)
        results.append((spec, res))
        for line in cache_log:
            sys.stdout.write(f"  {spec}: {line}\n")
    sys.stdout.write("| stand-in | first turn | TTFT per repetition (ms) | median (ms) |\n|---|---|---|---|\n")
    for config, res in results:
        for name, values in res.items():
            per = ", ".join(f"{v:.0f}" for v in values)
            sys.stdout.write(f"| {config} | {name} | {per} | {statistics.median(values):.0f} |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
