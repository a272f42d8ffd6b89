"""Twilio Media Streams serializer: exact wire shapes, and malformed frames become None."""

import base64
import json

import pytest

from shared import twilio_media as tw

START = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "accountSid": "AC1",
        "streamSid": "MZ1",
        "callSid": "CA1",
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"From": "+15550001", "To": "+15550002"},
    },
    "streamSid": "MZ1",
}


def test_parse_start_from_twilio_docs_shape():
    ev = tw.parse_event(json.dumps(START))
    assert ev == tw.Start(
        "MZ1", "CA1", "AC1", ("inbound",), {"From": "+15550001", "To": "+15550002"}, "audio/x-mulaw", 8000, 1, 1
    )


def test_parse_media_decodes_payload():
    msg = {
        "event": "media",
        "sequenceNumber": "3",
        "streamSid": "MZ1",
        "media": {
            "track": "inbound",
            "chunk": "1",
            "timestamp": "5",
            "payload": base64.b64encode(b"\x01\xff").decode(),
        },
    }
    ev = tw.parse_event(json.dumps(msg))
    assert isinstance(ev, tw.Media)
    assert (ev.payload, ev.chunk, ev.timestamp_ms, ev.sequence_number) == (b"\x01\xff", 1, 5, 3)


@pytest.mark.parametrize(
    "event",
    [
        tw.Connected(),
        tw.Start("MZ1", "CA1", "AC1", ("inbound",), {"a": "b"}),
        tw.Media("MZ1", b"\x00\x7f\xff" * 10, 4, 80, "inbound", 6),
        tw.Dtmf("MZ1", "7", "inbound_track", 9),
        tw.MarkEcho("MZ1", "reply-1:0", 10),
        tw.Stop("MZ1", "CA1", "AC1", 11),
    ],
)
def test_event_round_trip(event):
    assert tw.parse_event(tw.serialize_event(event)) == event


@pytest.mark.parametrize("command", [tw.SendMedia("MZ1", b"\xff" * 160), tw.SendMark("MZ1", "m1"), tw.Clear("MZ1")])
def test_command_round_trip(command):
    assert tw.parse_command(tw.serialize_command(command)) == command


def test_outbound_media_shape_is_what_twilio_expects():
    msg = json.loads(tw.serialize_command(tw.SendMedia("MZ9", b"\x00\x01")))
    assert msg == {"event": "media", "streamSid": "MZ9", "media": {"payload": "AAE="}}
    assert json.loads(tw.serialize_command(tw.Clear("MZ9"))) == {"event": "clear", "streamSid": "MZ9"}


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        b"\x80\x81\xfe binary",
        "[1, 2, 3]",
        '{"no_event": 1}',
        '{"event": "unknown_thing", "streamSid": "MZ1"}',
        '{"event": "media", "streamSid": "MZ1", "media": {"payload": "@@not base64@@"}}',
        '{"event": "media", "streamSid": "MZ1"}',
        '{"event": "start", "start": {"streamSid": "MZ1"}}',
        '{"event": "mark", "streamSid": "MZ1", "mark": {}}',
        '{"event": "dtmf", "streamSid": "MZ1", "dtmf": null}',
    ],
)
def test_malformed_frames_parse_to_none(raw, caplog):
    assert tw.parse_event(raw) is None
    assert caplog.records, "the reason must be logged"


def test_malformed_commands_parse_to_none():
    assert tw.parse_command('{"event": "media", "media": {}}') is None
    assert tw.parse_command("{") is None
