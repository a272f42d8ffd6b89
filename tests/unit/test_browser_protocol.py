"""The browser carriers' pure parts: client messages, event JSON, the agent audio queue."""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.browser.call import call_to, new_call_id, parse_agent
from gateway.browser.outbound import Frame, Mark, OutboundAudio, frames_of
from gateway.browser.protocol import BadMessage, client_event, conversation_event, parse_client_message
from gateway.conversation.transport import AgentText, AudioFormat, CallerLeft, CallerTranscript, TextIn, TurnRecorded


@pytest.mark.parametrize(
    ("raw", "kind", "text"),
    [('{"type": "ping"}', "ping", ""), ('{"type":"end_conversation"}', "end_conversation", ""),
     ('{"type": "text", "text": "  hours? "}', "text", "hours?")],
)  # fmt: skip
def test_client_messages_parse(raw: str, kind: str, text: str) -> None:
    msg = parse_client_message(raw)
    assert (msg.kind, msg.text) == (kind, text)


@pytest.mark.parametrize(
    ("raw", "says"),
    [("nope", "not JSON"), ("[1]", "JSON object"), ('{"type": "dance"}', "unknown message type 'dance'"),
     ('{"type": "text"}', "non-empty"), ('{"type": "text", "text": 5}', "non-empty"),
     (json.dumps({"type": "text", "text": "x" * 2001}), "longer than 2000"), (b"\xff\xfe", "not JSON")],
)  # fmt: skip
def test_bad_client_messages_say_what_is_wrong(raw: str | bytes, says: str) -> None:
    with pytest.raises(BadMessage, match=says):
        parse_client_message(raw)


def test_conversation_events_become_the_documented_json() -> None:
    assert json.loads(conversation_event(CallerTranscript("hi there")) or "") == {
        "type": "transcript", "text": "hi there", "is_final": True}  # fmt: skip
    assert json.loads(conversation_event(AgentText("reply-2", " Sure")) or "") == {
        "type": "ai_text", "text": " Sure", "is_complete": False, "reply_id": "reply-2"}  # fmt: skip
    turn = {"role": "assistant", "reply_id": "reply-2", "text": "Sure.", "interrupted": True, "status": "interrupted",
            "latency_ms": {"stt_ms": 30.0}}  # fmt: skip
    assert json.loads(conversation_event(TurnRecorded(turn)) or "") == {
        "type": "turn_complete", "reply_id": "reply-2", "text": "Sure.", "interrupted": True,
        "status": "interrupted", "latency_ms": {"stt_ms": 30.0}}  # fmt: skip
    assert conversation_event(TurnRecorded({"role": "user", "text": "hi"})) is None  # its transcript went out already


def test_agent_ids_and_call_ids() -> None:
    assert parse_agent(None) is None and parse_agent("") is None and parse_agent("default") is None
    assert parse_agent("7") == 7
    for bad in ("x", "0", "-3", "1.5"):
        with pytest.raises(ValueError):
            parse_agent(bad)
    call_id = new_call_id()
    assert call_id.startswith("WB") and len(call_id) == 34 and call_id != new_call_id()
    assert call_to(7) == "agent:7" and call_to(None) == "agent:default"


async def test_the_audio_queue_frames_marks_and_clears() -> None:
    fmt = AudioFormat("pcm16", 24000, 20)
    assert fmt.frame_bytes == 960
    assert [len(f) for f in frames_of(b"\x01" * 2000, 960)] == [960, 960, 960]
    assert frames_of(b"\x01" * 2000, 960)[-1].endswith(b"\x00" * 880)  # padded with PCM16 silence
    out = OutboundAudio(fmt)
    out.play(b"\x01" * 1920, "reply-1")
    out.mark("reply-1:0")
    assert out.pending == 3
    assert [await out.get() for _ in range(3)] == [Frame(b"\x01" * 960, "reply-1")] * 2 + [Mark("reply-1:0")]
    assert out.pop() is None
    out.play(b"\x01" * 960, "reply-2")
    generation = out.generation
    assert out.clear() == 1 and out.pending == 0 and out.generation == generation + 1


async def test_the_audio_queue_holds_its_frames_while_paused_and_gives_them_on_from_there() -> None:
    out = OutboundAudio(AudioFormat("pcm16", 24000, 20))
    out.play(b"\x01" * 960 + b"\x02" * 960 + b"\x03" * 960, "reply-1")
    assert await out.get() == Frame(b"\x01" * 960, "reply-1")
    out.pause()  # caller speech over the agent: the track plays silence
    assert out.pop() is None and out.pending == 2
    waiting = asyncio.ensure_future(out.get())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # the pacer waits for the resume
    out.resume()  # a backchannel: on from the second frame
    assert await asyncio.wait_for(waiting, 1) == Frame(b"\x02" * 960, "reply-1")
    out.pause()
    assert out.clear() == 1 and not out.paused  # a barge-in's clear ends the pause


def test_client_event_answers_ping_and_bad_messages_and_passes_the_rest_on() -> None:
    sent: list[tuple[str, dict[str, object]]] = []

    def send_event(kind: str, **fields: object) -> None:
        sent.append((kind, fields))

    assert client_event('{"type": "ping"}', send_event, "CA1") is None
    assert client_event("{not json", send_event, "CA1") is None
    assert [kind for kind, _ in sent] == ["pong", "error"] and "not JSON" in str(sent[1][1]["message"])
    assert client_event('{"type": "text", "text": " hi "}', send_event, "CA1") == TextIn("hi")
    assert isinstance(client_event('{"type": "end_conversation"}', send_event, "CA1"), CallerLeft)
    assert len(sent) == 2, "text and end_conversation send nothing back"
