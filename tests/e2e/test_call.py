"""End-to-end: Redis + STT + TTS + LLM + gateway as real processes on free ports, real models,
and a simulated Twilio call speaking the Media Streams protocol with real speech."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from shared.audio import TELEPHONY_RATE_HZ, wav_bytes
from shared.config import PROJECT_ROOT
from tests.speech import wer
from tools.call import wait_webhook
from tools.stack import Ports, Stack
from tools.twilio_sim import CallResult, SimulatedCall, fetch_call

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    logs = PROJECT_ROOT / "var" / "test-logs" / "e2e"  # kept after the run (git-ignored)
    shutil.rmtree(logs, ignore_errors=True)
    env = {"GATEWAY_DEBUG_AUDIO_DIR": str(logs / "utterances"), "GATEWAY_DATA_DIR": str(logs / "data")}
    s = Stack(Ports.free(), reuse=False, log_dir=logs, env=env)
    try:
        s.start(timeout_s=240)
    except RuntimeError as exc:
        tails = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(logs.glob("*.log")))
        pytest.fail(f"stack did not start: {exc}\n{tails}")
    yield s
    s.stop()


def place(stack: Stack, audio: Path) -> tuple[CallResult, dict, dict | None]:
    async def go():
        result = await SimulatedCall(stack.gateway_url).run(audio)
        record = await fetch_call(stack.gateway_url, result.call_sid)
        hook = await wait_webhook(f"http://127.0.0.1:{stack.ports.webhook}/webhooks", result.call_sid)
        return result, record, hook

    return asyncio.run(go())


@pytest.fixture(scope="module")
def arctic_call(stack: Stack, arctic_wav: Path):
    return place(stack, arctic_wav)


def user_and_reply(record: dict) -> tuple[dict, dict]:
    turns = record["turns"]
    user = next(t for t in turns if t["role"] == "user")
    reply = next(t for t in turns if t["role"] == "assistant" and t["reply_id"].startswith("reply"))
    return user, reply


def test_transcript_matches_reference(arctic_call, arctic_text):
    _, record, _ = arctic_call
    user, _ = user_and_reply(record)
    assert wer(arctic_text, user["raw_text"]) <= 0.25, user["raw_text"]


def test_agent_replied_with_text_and_latencies(arctic_call):
    _, record, _ = arctic_call
    _, reply = user_and_reply(record)
    assert len(reply["text"].split()) >= 3
    assert not reply["interrupted"]
    stages = {"endpointing_ms", "stt_ms", "llm_ttft_ms", "tts_first_audio_ms", "voice_to_voice_ms"}
    assert stages <= set(reply["latency_ms"])
    assert all(v > 0 for v in reply["latency_ms"].values())
    lat = reply["latency_ms"]
    assert lat["voice_to_voice_ms"] >= lat["stt_ms"] + lat["llm_ttft_ms"]


def test_reply_audio_is_mulaw_speech_of_the_reply(arctic_call, stack: Stack):
    """The caller's audio decodes as μ-law, lasts as long as the reply text spoken by TTS, and
    STT recognises the reply's words in it."""
    result, record, _ = arctic_call
    _, reply = user_and_reply(record)
    assert len(result.agent_audio) % 160 == 0  # whole 20 ms frames
    assert result.reply_bytes > 0
    reply_seconds = result.reply_bytes / TELEPHONY_RATE_HZ
    # The same text through the TTS service, for the expected duration.
    resp = httpx.post(
        f"http://127.0.0.1:{stack.ports.tts}/v1/audio/speech",
        json={"input": reply["text"], "voice": "af_heart", "response_format": "pcm"},
        timeout=120,
    )
    expected_seconds = len(resp.content) / 2 / 24000
    assert 0.75 * expected_seconds <= reply_seconds <= 1.3 * expected_seconds + 0.5
    pcm = result.agent_pcm16()[-result.reply_bytes :]
    assert np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > 300  # not silence
    stt = httpx.post(
        f"http://127.0.0.1:{stack.ports.stt}/v1/audio/transcriptions",
        files={"file": ("reply.wav", wav_bytes(pcm, TELEPHONY_RATE_HZ), "audio/wav")},
        timeout=120,
    )
    assert wer(reply["text"], stt.json()["text"]) <= 0.4, (reply["text"], stt.json()["text"])


def test_marks_sent_and_echoed_in_order(arctic_call):
    result, _, _ = arctic_call
    assert len(result.marks_received) >= 2  # greeting and reply each end with a mark
    assert result.marks_echoed == result.marks_received
    assert any(m.endswith(":end") and m.startswith("reply") for m in result.marks_received)


def test_turns_are_in_redis(arctic_call, stack: Stack):
    result, _, _ = arctic_call
    r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    keys = set(r.keys(f"*{result.call_sid}*"))
    assert keys, "no Redis keys for the call"
    turns_key = next(k for k in keys if k.endswith(":turns"))
    turns = [json.loads(t) for t in r.lrange(turns_key, 0, -1)]
    assert [t["role"] for t in turns] == ["assistant", "user", "assistant"]
    assert all(t["text"] and t["started_at"] <= t["ended_at"] for t in turns)
    call_key = f"sb:call:{result.call_sid}"
    assert call_key in keys
    assert r.hget(call_key, "status") == "completed"
    assert r.hget(call_key, "from") == "+15550100001"


def test_webhook_received_with_turns(arctic_call):
    result, record, hook = arctic_call
    assert hook is not None, "webhook not delivered"
    assert hook["event"] == "call.completed"
    assert hook["call_sid"] == result.call_sid
    assert (hook["from"], hook["to"]) == ("+15550100001", "+15550100002")
    assert [t["text"] for t in hook["turns"]] == [t["text"] for t in record["turns"]]
    assert hook["duration_seconds"] > 5


def test_leaking_sink_reply_is_on_topic(stack: Stack, caller_wav: Path):
    """A synthetic caller about a leaking sink: the receptionist asks a question or offers a visit."""
    _, record, _ = place(stack, caller_wav)
    user, reply = user_and_reply(record)
    assert "sink" in user["text"].lower() and "leak" in user["text"].lower()
    text = reply["text"].lower()
    on_topic = "?" in text or re.search(r"\b(book|schedul\w*|appointment|send|plumber|visit|come out|address)\b", text)
    assert on_topic, reply["text"]


def test_four_concurrent_calls_all_get_full_replies(stack: Stack, caller_wav: Path, arctic_wav: Path):
    """Issue 11: on the CPU default, concurrent calls (and their post-call extractions) used to cut
    each other's LLM streams short. Four callers at once: every one gets a whole spoken answer."""

    async def one(i: int) -> tuple[CallResult, dict]:
        await asyncio.sleep(i * 0.7)
        # settle_s: on two loaded cores the LLM may take seconds to close its stream after the last
        # sentence (the end mark waits for it); a caller who hung up then would cut the reply short.
        result = await SimulatedCall(stack.gateway_url).run(
            caller_wav if i % 2 == 0 else arctic_wav, reply_timeout_s=240.0, settle_s=6.0
        )
        return result, await fetch_call(stack.gateway_url, result.call_sid, wait_ended_s=15.0)

    async def go() -> list[tuple[CallResult, dict]]:
        return list(await asyncio.gather(*(one(i) for i in range(4))))

    for result, record in asyncio.run(go()):
        kinds = [t.get("reply_id", "").split("-")[0] for t in record["turns"] if t["role"] == "assistant"]
        assert "apology" not in kinds, record["turns"]
        users = [t for t in record["turns"] if t["role"] == "user"]
        assert users and not any(t.get("unanswered") for t in users), record["turns"]
        _, reply = user_and_reply(record)
        assert reply["text"].strip() and not reply["interrupted"] and reply["status"] == "completed", reply
        assert result.reply_bytes > 0


def _histogram_counts(url: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    from prometheus_client.parser import text_string_to_metric_families

    families = text_string_to_metric_families(httpx.get(url + "/metrics", timeout=10).text)
    return {
        tuple(sorted((k, v) for k, v in s.labels.items() if k != "le")): s.value
        for family in families
        if family.name == name and family.type == "histogram"
        for s in family.samples
        if s.name == name + "_count"
    }


def test_metrics_parse_and_histograms_moved_after_the_call(arctic_call, stack: Stack):
    stages = _histogram_counts(stack.gateway_url, "gateway_stage_latency_seconds")
    for stage in ("endpointing", "stt", "llm_ttft", "tts_first_audio", "voice_to_voice"):
        assert stages[(("stage", stage),)] >= 1, stage
    stt = _histogram_counts(f"http://127.0.0.1:{stack.ports.stt}", "stt_request_duration_seconds")
    tts = _histogram_counts(f"http://127.0.0.1:{stack.ports.tts}", "tts_request_duration_seconds")
    assert sum(stt.values()) >= 1 and sum(tts.values()) >= 1
