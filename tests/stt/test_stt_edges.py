"""STT service edge cases (issue 11, item 8): odd WebSocket frames, bounded decoding, cancelled
requests, language and format validation. Real tiny.en model where a request reaches it."""

from __future__ import annotations

import io
import json
import logging
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from stt_helpers import Server, Utterance
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from services.stt.decoding import SAMPLE_RATE_HZ, AudioTooLongError, decode_upload
from tests.speech import wer


@pytest.fixture
def server_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog that also hears uvicorn's loggers (they do not propagate to the root logger)."""
    uvicorn_log = logging.getLogger("uvicorn")
    uvicorn_log.addHandler(caplog.handler)
    caplog.set_level(logging.INFO)
    try:
        yield caplog
    finally:
        uvicorn_log.removeHandler(caplog.handler)


def test_cancelled_request_logs_no_traceback_and_scheduler_keeps_serving(
    server: Server, arctic: Utterance, server_logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    scheduler = server.app.state.stt.scheduler
    real = scheduler.run_batch

    def slow(items):  # type: ignore[no-untyped-def]
        time.sleep(1.0)  # the client gives up while its request is inside this batch
        return real(items)

    monkeypatch.setattr(scheduler, "run_batch", slow)
    for read_timeout in (0.3, 0.05):  # inside the batch; before it (features / queue)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                server.url + "/v1/audio/transcriptions/raw",
                params={"sample_rate": arctic.rate},
                content=arctic.pcm16(),
                timeout=httpx.Timeout(10, read=read_timeout),
            )
        time.sleep(1.5)
    monkeypatch.setattr(scheduler, "run_batch", real)
    ok = httpx.post(
        server.url + "/v1/audio/transcriptions/raw",
        params={"sample_rate": arctic.rate},
        content=arctic.pcm16(),
        timeout=60,
    )
    assert ok.status_code == 200 and ok.json()["text"]
    bad = [
        r for r in server_logs.records if r.exc_info or r.levelno >= logging.ERROR or "InvalidState" in r.getMessage()
    ]
    assert not bad, [(r.name, r.getMessage(), r.exc_info) for r in bad]


def _error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err  # type: ignore[no-any-return]


def _silent_flac(seconds: int, rate: int = 8000) -> bytes:
    """A FLAC file of ``seconds`` of silence: hours of audio in a few hundred kB."""
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", samplerate=rate, channels=1, format="FLAC", subtype="PCM_16") as f:
        minute = np.zeros(rate * 60, dtype=np.int16)
        for _ in range(seconds // 60):
            f.write(minute)
    return buf.getvalue()


def _silent_webm(seconds: float) -> bytes:
    """WebM/Opus silence (libsndfile cannot read it, so it takes the FFmpeg/PyAV path)."""
    import av

    out = io.BytesIO()
    with av.open(out, "w", format="webm") as container:
        stream = container.add_stream("libopus", rate=48000)
        stream.layout = "mono"
        block = np.zeros((1, 960), dtype=np.float32)
        for pts in range(0, int(seconds * 48000), 960):
            frame = av.AudioFrame.from_ndarray(block, format="flt", layout="mono")
            frame.sample_rate, frame.pts = 48000, pts
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def _peak_mib(fn: Callable[[], object]) -> tuple[object, float]:
    """Run ``fn``; return its result and the peak of traced (Python + numpy) memory meanwhile, MiB."""
    tracemalloc.start()
    try:
        return fn(), tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_two_hour_flac_is_refused_while_decoding(server: Server) -> None:
    flac = _silent_flac(2 * 3600)  # ≈ 180 kB: passes the upload-size guard
    resp, peak = _peak_mib(
        lambda: httpx.post(
            server.url + "/v1/audio/transcriptions", files={"file": ("long.flac", flac, "audio/flac")}, timeout=120
        )
    )
    assert isinstance(resp, httpx.Response)
    assert _error(resp, 413)["code"] == "audio_too_long"
    # Decoding all of it would hold 2 h of float32 audio (> 400 MiB at 16 kHz); 120 s is ~8 MiB.
    assert peak < 64, f"decoding used {peak:.0f} MiB"


def test_ffmpeg_decoding_stops_at_the_limit() -> None:
    short = decode_upload(_silent_webm(3.0), "audio/webm", max_seconds=60)
    assert abs(short.size - 3 * SAMPLE_RATE_HZ) < SAMPLE_RATE_HZ // 10 and short.dtype == np.float32
    long_webm = _silent_webm(300.0)

    def decode() -> object:
        with pytest.raises(AudioTooLongError) as info:
            decode_upload(long_webm, "audio/webm", max_seconds=60)
        return info.value

    err, peak = _peak_mib(decode)
    assert isinstance(err, AudioTooLongError) and 60 < err.seconds < 70
    assert peak < 32, f"decoding used {peak:.0f} MiB"
    with pytest.raises(AudioTooLongError):  # raw audio is measured by its byte count
        decode_upload(bytes(8000 * 61), "audio/basic", max_seconds=60)


def test_unknown_language_is_400(server: Server, arctic: Utterance) -> None:
    url = server.url + "/v1/audio/transcriptions"
    files = {"file": ("a.wav", arctic.wav, "audio/wav")}
    klingon = _error(httpx.post(url, files=files, data={"language": "klingon"}), 400)
    assert klingon["param"] == "language" and klingon["code"] == "unsupported_language"
    assert klingon["type"] == "invalid_request_error"
    french = _error(httpx.post(url, files=files, data={"language": "fr"}), 400)  # tiny.en: English only
    assert "English-only" in french["message"]
    raw = httpx.post(
        server.url + "/v1/audio/transcriptions/raw", params={"language": "tlh"}, content=arctic.pcm16(), timeout=60
    )
    assert _error(raw, 400)["param"] == "language"
    ok = httpx.post(url, files=files, data={"language": "EN", "response_format": "verbose_json"}, timeout=60)
    assert ok.status_code == 200 and ok.json()["language"] == "en"


def test_bad_format_is_400_not_415(server: Server) -> None:
    url = server.url + "/v1/audio/transcriptions"
    raw = bytes(range(256)) * 40
    bogus = _error(
        httpx.post(url, files={"file": ("a.raw", raw, "application/octet-stream")}, data={"format": "bogus"}), 400
    )
    assert bogus["param"] == "format" and bogus["type"] == "invalid_request_error"
    body = httpx.post(url + "?format=bogus", content=raw, headers={"Content-Type": "audio/x-raw"})
    assert _error(body, 400)["param"] == "format"
    wrong = httpx.post(url, files={"file": ("a.raw", raw, "audio/wav")}, data={"response_format": "bogus"})
    assert _error(wrong, 400)["param"] == "response_format"
    junk = httpx.post(url, files={"file": ("x.wav", raw, "audio/wav")})  # a known format, undecodable bytes
    assert _error(junk, 415)["code"] == "unsupported_audio"


def _ws_url(server: Server, query: str = "") -> str:
    return server.url.replace("http", "ws") + "/v1/audio/stream" + query


ODD_TEXT_FRAMES = [
    "[]",
    "42",
    "null",
    '"end"',
    '{"type": 5}',
    '{"type": ["end"]}',
    '{"type": "nope"}',
    "not json",
    "{}",
    "",
]
"""Text frames that are not ``{"type": "end"}``: not JSON, JSON but no object, wrong types."""


def test_ws_odd_text_frames_get_errors_and_the_stream_goes_on(server: Server, arctic: Utterance) -> None:
    with connect(_ws_url(server, f"?sample_rate={arctic.rate}&interval_ms=60000"), open_timeout=10) as ws:
        for frame in ODD_TEXT_FRAMES:
            ws.send(frame)
            err = json.loads(ws.recv(timeout=30))
            assert err["type"] == "error" and err["error"]["code"] == "bad_message", (frame, err)
        ws.send(arctic.pcm16())
        ws.send(json.dumps({"type": "end"}))
        final = json.loads(ws.recv(timeout=60))
    assert final["type"] == "final" and wer(arctic.text, final["text"]) <= 0.25, final


def test_ws_unknown_language_is_refused(server: Server) -> None:
    with connect(_ws_url(server, "?language=klingon"), open_timeout=10) as ws:
        msg = json.loads(ws.recv(timeout=30))
        assert msg["type"] == "error" and msg["error"]["param"] == "language"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
    assert ws.close_code == 1008
