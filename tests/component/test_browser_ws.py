"""The WebSocket voice API (``/ws/conversation``) spoken by a Python client, as docs/websocket-api.md describes.

A real recording (CMU ARCTIC, a human voice) is encoded to Opus/WebM with ffmpeg, as a browser's
``MediaRecorder`` would send it, and streamed in real time in small pieces to an in-process
gateway with real Redis, STT, TTS, VAD and a SQLite database; the LLM is scripted. The client
checks every event in order, the agent's PCM, ``ping``/``pong``, that malformed messages get an
``error`` while the session goes on, and that ``end_conversation`` answers with the post-call
extraction as ``analysis``.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.component.conftest import ADMIN_KEY
from tests.component.fakes import FakeLLM

pytestmark = pytest.mark.timeout(180)

REPLY = "Sure, I can send a plumber today. What is the address?"
DETAILS = {"problem": "a question about Gregson", "urgency": "low", "summary": "The caller asked about Gregson."}


def webm_of(wav: Path, out: Path, pad_s: float = 2.0) -> bytes:
    """``wav`` + ``pad_s`` of silence as Opus in WebM (what Chrome's MediaRecorder sends)."""
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), "-af", f"apad=pad_dur={pad_s}",
         "-c:a", "libopus", "-b:a", "32k", "-ac", "1", "-f", "webm", str(out)],
        check=True,
    )  # fmt: skip
    return out.read_bytes()


class Client:
    """Reads the server's messages into ``log``: ``(type, fields)`` for events, ``("audio", bytes)`` for PCM."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.log: list[tuple[str, Any]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if isinstance(msg, bytes):
                self.log.append(("audio", msg))
            else:
                event = json.loads(msg)
                self.log.append((event.pop("type"), event))

    async def wait_for(self, kind: str, timeout_s: float = 60, **match: Any) -> dict[str, Any]:
        """The first ``kind`` event whose fields include ``match`` (waiting for it)."""
        async with asyncio.timeout(timeout_s):
            while True:
                for k, fields in self.log:
                    if k == kind and all(fields.get(key) == v for key, v in match.items()):
                        return dict(fields)
                await asyncio.sleep(0.05)

    def types(self) -> list[str]:
        return [k for k, _ in self.log]

    def index(self, kind: str, **match: Any) -> int:
        log = self.log
        return next(i for i, (k, f) in enumerate(log) if k == kind and all(f.get(a) == v for a, v in match.items()))

    async def wait_count(self, kind: str, count: int, timeout_s: float = 5) -> None:
        """Wait until ``count`` events of ``kind`` have arrived."""
        async with asyncio.timeout(timeout_s):
            while self.types().count(kind) < count:  # noqa: ASYNC110 (the reader task appends)
                await asyncio.sleep(0.05)


def check_reply_order(client: Client, reply_id: str) -> None:
    """A reply's text streams before it completes, its audio follows ``ai_audio_start``, and
    ``turn_complete`` comes last."""
    log = client.log
    texts = [i for i, (k, f) in enumerate(log) if k == "ai_text" and f["reply_id"] == reply_id]
    start = client.index("ai_audio_start", reply_id=reply_id)
    done = client.index("turn_complete", reply_id=reply_id)
    complete = client.index("ai_text", reply_id=reply_id, is_complete=True)
    assert texts and texts[-1] == complete, "the complete text comes after the reply's deltas"
    assert max(texts) < done and start < done
    nxt = next((i for i in range(start + 1, len(log)) if log[i][0] == "ai_audio_start"), len(log))
    audio = [f for k, f in log[start + 1 : nxt] if k == "audio"]
    assert audio, f"no PCM after ai_audio_start of {reply_id}"
    pcm = np.frombuffer(b"".join(audio), dtype="<i2")
    assert pcm.size > 0.5 * 24000 and np.abs(pcm).max() > 1000, "the reply's audio is speech, not silence"


async def test_websocket_conversation_speaks_the_documented_protocol(
    gateway, fake_llm: FakeLLM, arctic_wav: Path, arctic_text: str, tmp_path: Path
) -> None:
    fake_llm.replies.append(REPLY)
    fake_llm.completion_reply = json.dumps(DETAILS)
    base, _app = gateway(
        database_enabled=True,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'sb.db'}",
        extraction_defer_s=0,
        turn_detection="silence",
    )
    webm = webm_of(arctic_wav, tmp_path / "caller.webm")
    duration_s = 5.0  # ~3 s of speech + 2 s of silence: sent at that pace, in 20 pieces
    url = base.replace("http://", "ws://") + "/ws/conversation"
    async with connect(url, max_size=None) as ws:
        client = Client(ws)
        connected = await client.wait_for("connected")
        assert connected["session_id"].startswith("WB") and connected["sample_rate"] == 24000
        greeting = await client.wait_for("turn_complete", reply_id="greeting-1")
        assert "Acme Plumbing" in greeting["text"] and not greeting["interrupted"]

        pieces = [webm[i : i + len(webm) // 20 + 1] for i in range(0, len(webm), len(webm) // 20 + 1)]
        for piece in pieces:  # as MediaRecorder(timeslice) would, in real time
            await ws.send(piece)
            await asyncio.sleep(duration_s / len(pieces))
        transcript = await client.wait_for("transcript")
        heard = {w.strip(".,").lower() for w in transcript["text"].split()}
        assert {"turned", "faced", "gregson"} & heard, transcript
        assert transcript["is_final"] is True
        reply = await client.wait_for("turn_complete", reply_id="reply-2")
        assert reply["text"] == REPLY and not reply["interrupted"]
        assert {"endpointing_ms", "stt_ms", "llm_ttft_ms", "tts_first_audio_ms", "voice_to_voice_ms"} <= set(
            reply["latency_ms"]
        )
        deltas = [f["text"] for k, f in client.log if k == "ai_text" and f["reply_id"] == "reply-2"]
        assert len(deltas) > 5, "streamed token by token"
        assert "".join(deltas[:-1]).strip() == REPLY == deltas[-1]

        await ws.send(json.dumps({"type": "ping"}))
        await client.wait_for("pong")
        for bad in ("not json", json.dumps({"type": "dance"}), json.dumps(["ping"]), json.dumps({"type": "text"})):
            await ws.send(bad)
        await asyncio.sleep(0.5)
        errors = [f["message"] for k, f in client.log if k == "error"]
        assert len(errors) == 4 and "not JSON" in errors[0] and "dance" in errors[1], errors
        await ws.send(json.dumps({"type": "ping"}))
        await client.wait_count("pong", 2)  # the session survived the bad messages

        await ws.send(json.dumps({"type": "end_conversation"}))
        analysis = await client.wait_for("analysis")
        await asyncio.wait_for(client.task, 10)  # the server closes after the analysis
    assert analysis["session_id"] == connected["session_id"] and analysis["status"] == "ok", analysis
    assert analysis["details"]["summary"] == DETAILS["summary"]
    assert analysis["details"]["urgency"] == "low"
    # "faced … across the table": tiny.en int8 hears the name as "Gregson" on some CPUs, "Greggs in" on others.
    extraction_prompt = fake_llm.completions[0]["messages"][1]["content"]
    assert "faced" in extraction_prompt and "across the table" in extraction_prompt, "the extraction read the call"

    types = client.types()
    assert types[0] == "connected" and types[-1] == "analysis"
    check_reply_order(client, "greeting-1")
    check_reply_order(client, "reply-2")
    assert client.index("transcript") < client.index("ai_text", reply_id="reply-2")

    async with httpx.AsyncClient() as http:
        record = (await http.get(f"{base}/calls/{connected['session_id']}", headers={"X-Admin-Key": ADMIN_KEY})).json()
    assert record["from"] == "browser" and record["to"] == "agent:default"
    assert [t["role"] for t in record["turns"]] == ["assistant", "user", "assistant"]  # greeting, caller, reply


async def test_websocket_refuses_an_unknown_agent(gateway) -> None:
    base, _app = gateway()
    url = base.replace("http://", "ws://") + "/ws/conversation?agent=42"
    async with connect(url) as ws:
        msg = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert msg["type"] == "error" and "42" in msg["message"]
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def documented_client() -> Any:
    """``talk`` exactly as docs/websocket-api.md prints it (its ```python block)."""
    doc = Path(__file__).resolve().parents[2] / "docs" / "websocket-api.md"
    code = re.search(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert code is not None, "docs/websocket-api.md has no python snippet"
    namespace: dict[str, Any] = {"__name__": "websocket_api_doc"}
    exec(compile(code.group(1), str(doc), "exec"), namespace)
    return namespace["talk"]


async def test_the_documented_client_gets_an_analysis(
    gateway, fake_llm: FakeLLM, arctic_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_llm.completion_reply = json.dumps(DETAILS)
    base, _app = gateway(turn_detection="silence")
    talk = documented_client()
    analysis = await talk(
        base.replace("http://", "ws://") + "/ws/conversation", webm_of(arctic_wav, tmp_path / "q.webm"), 8.0
    )
    printed = capsys.readouterr().out
    assert analysis["type"] == "analysis" and analysis["status"] == "ok", analysis
    assert analysis["details"]["summary"] == DETAILS["summary"]
    assert "transcript" in printed and "faced" in printed and "turn_complete" in printed, printed


async def test_an_agent_without_a_number_is_chosen_by_id(gateway, tmp_path: Path) -> None:
    base, _app = gateway(database_enabled=True, database_url=f"sqlite+aiosqlite:///{tmp_path / 'sb.db'}")
    agent = {"name": "Bob's Bakery", "greeting": "Bob's Bakery, fresh bread all day.", "system_prompt": "Sell bread."}
    async with httpx.AsyncClient(base_url=base, headers={"X-Admin-Key": ADMIN_KEY}) as http:
        agent_id = (await http.post("/api/agents", json=agent)).raise_for_status().json()["id"]
        async with connect(base.replace("http://", "ws://") + f"/ws/conversation?agent={agent_id}") as ws:
            client = Client(ws)
            connected = await client.wait_for("connected")
            greeting = await client.wait_for("ai_text", is_complete=True)
            await ws.send(json.dumps({"type": "end_conversation"}))
            analysis = await client.wait_for("analysis")
        calls = (await http.get("/api/calls")).json()
    assert connected["agent"] == "Bob's Bakery" and greeting["text"] == agent["greeting"]
    assert analysis["status"] == "skipped", "the caller said nothing"
    call = next(c for c in calls["items"] if c["call_sid"] == connected["session_id"])
    assert call["agent_id"] == agent_id and call["from_number"] == "browser", call
    assert call["to_number"] == f"agent:{agent_id}", call


async def test_browser_calls_can_require_the_admin_key(gateway) -> None:
    base, _app = gateway(browser={"require_admin_key": True})
    url = base.replace("http://", "ws://") + "/ws/conversation"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url):
            pass
    assert refused.value.response.status_code == 403  # closed before the upgrade completed
    async with connect(url, additional_headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as ws:
        assert json.loads(await ws.recv())["type"] == "connected"
    async with httpx.AsyncClient() as http:
        offer = await http.post(f"{base}/webrtc/offer", json={"sdp": "v=0", "type": "offer"})
        config = (await http.get(f"{base}/webrtc/config")).json()
    assert offer.status_code == 401 and config["requireKey"] is True
