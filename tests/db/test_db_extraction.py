"""Post-call extraction with the real LLM (llama.cpp server, the project's Qwen2.5 0.5B GGUF), and the
retry on an invalid answer (against a local OpenAI-shaped server that answers badly on purpose)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from dbtest_support import Process, WebhookReceiver, free_port
from fastapi import FastAPI, Request

from gateway.after_call.extraction import CallDetails, Extractor, format_transcript, ground
from gateway.after_call.outbox import OutboxDispatcher, OutboxPolicy
from gateway.after_call.runtime import DatabaseHooks
from gateway.after_call.worker import PostCallWorker
from gateway.agents.profile import CallSummary
from gateway.config import GatewaySettings
from gateway.db.engine import Database
from gateway.db.migrate import upgrade
from gateway.db.repos import AgentRepo, CallRepo, NumberRepo

# A real call's turns as the session stores them (a caller with a leak under the sink).
CALL = [
    {
        "role": "assistant",
        "text": "Thanks for calling Acme Plumbing, this is the virtual receptionist. How can I help?",
    },
    {"role": "user", "text": "Hi, the pipe under my kitchen sink is leaking and there is water all over the floor."},
    {"role": "assistant", "text": "Sorry to hear that, we can send a plumber today. May I have your name and address?"},
    {"role": "user", "text": "Yes, it's Maria Lopez, 42 Elm Street in Springfield."},
    {"role": "assistant", "text": "Thank you Maria. What is the best number to reach you?"},
    {"role": "user", "text": "Call me back on 555 867 5309. Any time after 2 pm works."},
    {"role": "assistant", "text": "Great, a plumber will come to 42 Elm Street this afternoon after 2 pm."},
]


def test_transcript_format() -> None:
    text = format_transcript([*CALL[:2], {"role": "user", "text": "  "}])
    assert text.splitlines() == [f"Agent: {CALL[0]['text']}", f"Caller: {CALL[1]['text']}"]


def test_grounding_drops_details_the_caller_never_said() -> None:
    said = "This is Maria Lopez at 42 Elm Street, call me on 555 867 5309 after 2 pm."
    guessed = CallDetails(caller_name="Caller ID", address="Acme Plumbing", callback_number="+1 555 000 1111",
                          requested_time_window="tomorrow morning", summary="s")  # fmt: skip
    assert ground(guessed, said).model_dump(exclude={"urgency", "summary", "problem"}) == dict.fromkeys(
        ("caller_name", "callback_number", "address", "requested_time_window")
    )
    real = CallDetails(caller_name="Maria Lopez", address="42 Elm St", callback_number="(555) 867-5309",
                       requested_time_window="after 2 pm", summary="s")  # fmt: skip
    assert ground(real, said) == real
    caller_id = CallDetails(callback_number="+15550100001", summary="s")
    assert ground(caller_id, "no number said", "+15550100001") == caller_id


@pytest.mark.timeout(300)
async def test_real_llm_extracts_the_call_and_call_completed_carries_it(llm_server: Process, tmp_path: Path) -> None:
    """call_ended → worker → real LLM JSON (schema-constrained) → validated → stored → signed webhook."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    receiver = WebhookReceiver()
    receiver.start()
    async with db.sessions() as s, s.begin():
        agent = await AgentRepo(s).create(name="Acme", greeting="Hi", system_prompt="p", voice="af_heart",
                                          webhook_url=receiver.url, webhook_secret="s3cret-s3cret",
                                          webhook_events=["call.completed"])  # fmt: skip
        await NumberRepo(s).create("+15550100002", agent.id)
    llm_url = f"http://127.0.0.1:{llm_server.port}/v1"
    extractor = Extractor(llm_url, GatewaySettings().llm.model, timeout_s=240)
    async with httpx.AsyncClient() as client:
        dispatcher = OutboxDispatcher(db, client, OutboxPolicy(poll_interval_s=0.2))
        worker = PostCallWorker(db, extractor, dispatcher, poll_interval_s=0.2)
        hooks = DatabaseHooks(GatewaySettings(data_dir=str(tmp_path)), db, dispatcher, worker)
        dispatcher.start()
        worker.start()
        try:
            profile = await hooks.profile_for("CAx", "+15550100001", "+15550100002")
            now = time.time()
            await hooks.call_ended(
                CallSummary("CAx", "MZx", "+15550100001", "+15550100002", now - 60, now, CALL, profile)
            )
            deadline = time.monotonic() + 280
            while not receiver.received:
                assert time.monotonic() < deadline, "call.completed never arrived"
                await asyncio.sleep(0.2)
        finally:
            await worker.stop()
            await dispatcher.stop()
            await extractor.close()
            receiver.stop()
    async with db.sessions() as s:
        call = await CallRepo(s).get("CAx", details=True)
    await db.dispose()
    assert call is not None and call.extraction is not None
    ext = call.extraction
    assert ext.status == "ok", (ext.error, ext.raw)
    assert ext.raw is not None and json.loads(ext.raw)  # the LLM's own text is valid JSON
    details = CallDetails.model_validate(ext.data)
    assert details.urgency in ("low", "normal", "emergency")
    assert details.summary.strip()
    assert "maria" in (details.caller_name or "").lower()
    assert "elm" in (details.address or "").lower()
    assert call.extraction_status == "done"
    body = receiver.received[0].json()
    assert body["event"] == "call.completed" and body["extraction"] == ext.data
    assert body["extraction_status"] == "done"


class FakeLLM:
    """An OpenAI-shaped /v1/chat/completions answering from a script (to exercise the retry)."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.requests: list[dict[str, Any]] = []
        self.port = free_port()
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> dict[str, Any]:
            body = await request.json()
            self.requests.append(body)
            content = self.answers[min(len(self.requests), len(self.answers)) - 1]
            message = {"role": "assistant", "content": content}
            return {
                "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
            }  # fmt: skip

        self.server = uvicorn.Server(uvicorn.Config(app, port=self.port, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> FakeLLM:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


VALID = json.dumps({"caller_name": "Ann", "callback_number": "", "address": "", "problem": "leak",
                    "urgency": "EMERGENCY", "requested_time_window": "", "summary": "Ann has a leak."})  # fmt: skip


async def test_invalid_answer_is_retried_once_with_the_error() -> None:
    with FakeLLM(['{"caller_name": "Ann", "urgency": "whenever"', VALID]) as llm:
        extractor = Extractor(f"http://127.0.0.1:{llm.port}/v1", "m")
        result = await extractor.extract(CALL, "+15550100001")
        await extractor.close()
    assert result.ok and result.attempts == 2
    assert result.details is not None and result.details.urgency == "emergency"
    assert result.details.callback_number is None  # "" means unknown
    retry = llm.requests[1]["messages"]
    assert retry[-2]["role"] == "assistant" and "invalid" in retry[-1]["content"]
    first = llm.requests[0]
    assert first["response_format"]["type"] == "json_object"
    assert set(first["response_format"]["schema"]["required"]) == set(CallDetails.model_fields)
    assert first["temperature"] == 0.0


async def test_two_invalid_answers_fail_with_the_reason() -> None:
    bad = json.dumps({"urgency": "whenever", "summary": ""})
    with FakeLLM([bad, bad]) as llm:
        extractor = Extractor(f"http://127.0.0.1:{llm.port}/v1", "m", json_mode="json_schema")
        result = await extractor.extract(CALL)
        await extractor.close()
    assert not result.ok and result.attempts == 2 and len(llm.requests) == 2
    assert result.error is not None and "urgency" in result.error
    assert llm.requests[0]["response_format"]["type"] == "json_schema"


async def test_unreachable_llm_fails_without_raising() -> None:
    extractor = Extractor(f"http://127.0.0.1:{free_port()}/v1", "m", timeout_s=2)
    result = await extractor.extract(CALL)
    await extractor.close()
    assert not result.ok and result.error is not None and "LLM request failed" in result.error
