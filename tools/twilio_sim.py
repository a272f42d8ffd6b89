"""A simulated Twilio phone call: plays Twilio's side of the Media Streams protocol.

What Twilio does, and so what this does (https://www.twilio.com/docs/voice/media-streams):
POST the voice webhook, read the TwiML ``<Connect><Stream url>`` and its ``<Parameter>``s, open
the WebSocket, send ``connected`` then ``start`` (with ``customParameters``), then one 20 ms
base64 μ-law ``media`` frame every 20 ms for the whole call (silence when the caller is quiet),
play the server's ``media`` in real time, echo each ``mark`` once the audio before it has played,
on ``clear`` drop unplayed audio and echo pending marks at once, and end with ``stop``.

When a stream ends while the call goes on (the server closed it or the connection broke, and the
caller did not hang up), Twilio runs the TwiML's next verb (twilio.com/docs/voice/twiml/connect:
"<Connect> will finish and Twilio will move on to the next TwiML verb"): here the ``<Redirect>`` to
the voice webhook, whose answer may open a new stream (a new streamSid, stream time from zero) on
whichever gateway it names. Failed webhook requests go to the number's fallback URL
(:mod:`tools.twilio_voice`). Caller audio during the gap is lost, as on a real line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import websockets
from twilio.request_validator import RequestValidator

from shared import twilio_media as tw
from shared.audio import FRAME_MS, TELEPHONY_RATE_HZ
from tools.call_result import CallResult, fetch_call
from tools.caller_audio import FRAME_S, SILENCE_FRAME, caller_frames, speech_end_s
from tools.twilio_voice import Twiml, VoiceWebhook

__all__ = ["SILENCE_FRAME", "CallResult", "SimulatedCall", "caller_frames", "fetch_call", "speech_end_s"]
"""The caller's audio helpers and the call's result live in :mod:`tools.caller_audio` and
:mod:`tools.call_result`; they are importable from here too."""

log = logging.getLogger(__name__)


class SimulatedCall:
    """One call against a gateway at ``base_url`` (http://host:port).

    Args:
        base_url: the gateway's HTTP base URL.
        from_: caller number (E.164).
        to: called number (E.164).
        auth_token: if set, requests carry ``X-Twilio-Signature`` as Twilio computes it.
        public_url: the gateway's public base URL behind a proxy (``GATEWAY_PUBLIC_URL``).
        fallback_url: the number's voice fallback URL (another gateway), used when a webhook fails.
    """

    def __init__(
        self,
        base_url: str,
        from_: str = "+15550100001",
        to: str = "+15550100002",
        auth_token: str = "",
        public_url: str | None = None,
        fallback_url: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.public_url = public_url.rstrip("/") if public_url else None
        """The gateway's public base URL behind a proxy (``GATEWAY_PUBLIC_URL``): Twilio signs the
        URLs it calls there, while this simulator, like the proxy, reaches ``base_url``."""
        self.validator = RequestValidator(auth_token) if auth_token else None
        self.webhook = VoiceWebhook(base_url, public_url, auth_token, fallback_url)
        self.twiml_doc: Twiml | None = None
        """The TwiML document the call runs now."""
        self.from_ = from_
        self.to = to
        self.call_sid = "CA" + uuid.uuid4().hex
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.account_sid = "AC" + uuid.uuid4().hex
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._caller_audio: list[bytes] = []
        self._playout_end = 0.0
        self._pending_marks: list[tuple[float, str]] = []
        self._last_agent_audio = 0.0
        self._ws: websockets.ClientConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._leaving = False
        """The caller is hanging up (or the test closes the line): a closed stream is not lost."""
        self.chunk = 0
        """Inbound frames sent on this stream so far (the caller's stream clock, 20 ms each)."""
        self._line_frames = 0
        """Frames of the line so far, every stream's and the ones lost between streams (the clock's schedule)."""
        self._seq = 3  # sequenceNumber: 1 = start, then one per media frame
        self._clock_lock = asyncio.Lock()
        self.result = CallResult(self.call_sid, self.stream_sid)

    def _form(self, status: str) -> dict[str, str]:
        return {
            "CallSid": self.call_sid,
            "AccountSid": self.account_sid,
            "From": self.from_,
            "To": self.to,
            "Direction": "inbound",
            "CallStatus": status,
        }

    async def twiml(self) -> tuple[str, dict[str, str]]:
        """POST the voice webhook like Twilio; return (stream URL, custom parameters)."""
        self.twiml_doc = doc = await self.webhook.fetch(self.webhook.voice_url, self._form("ringing"))
        if doc.stream_url is None:
            raise RuntimeError(f"TwiML from {doc.url} has no <Connect><Stream>: {doc}")
        return doc.stream_url, doc.parameters

    def say(self, frames: list[bytes]) -> int:
        """Queue caller audio frames; they replace silence from the next 20 ms tick.

        Returns the chunk number at which this audio starts.
        """
        start = self.chunk + len(self._caller_audio) + 1
        self._caller_audio.extend(frames)
        return start

    async def send_backlog(self, frames: list[bytes]) -> None:
        """Send caller frames back to back, at once, as a network or a busy server delivers a
        backlog; stream time (chunk numbers) advances as usual, and the 20 ms clock then waits
        until real time catches up before it sends the next frame."""
        assert self._ws is not None
        async with self._clock_lock:
            for payload in frames:
                await self._send_media(self._ws, payload)

    async def _send_media(self, ws: websockets.ClientConnection, payload: bytes) -> None:
        """One inbound ``media`` frame; advances the stream clock (chunk, timestamp, sequence)."""
        self.chunk += 1
        self._line_frames += 1
        self._seq += 1
        media = tw.Media(self.stream_sid, payload, self.chunk, self.chunk * FRAME_MS, "inbound", self._seq)
        await ws.send(tw.serialize_event(media))

    def agent_idle_for(self) -> float:
        """Seconds since the agent's audio last finished playing (0 while playing)."""
        now = time.monotonic()
        return max(0.0, now - max(self._playout_end, self._last_agent_audio))

    async def _media_clock(self) -> None:
        """Send one inbound frame every 20 ms, like a phone line, on an absolute schedule, on the
        call's current stream (while there is none, the caller's audio is lost)."""
        start = time.monotonic()
        while True:
            payload = self._caller_audio.pop(0) if self._caller_audio else SILENCE_FRAME
            ws = self._ws
            async with self._clock_lock:
                if ws is not None and ws.close_code is None:
                    with contextlib.suppress(websockets.ConnectionClosed):
                        await self._send_media(ws, payload)
                        await self._flush_marks(ws)
                else:
                    self._line_frames += 1  # lost with the stream
            delay = start + self._line_frames * FRAME_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def _flush_marks(self, ws: websockets.ClientConnection) -> None:
        now = time.monotonic()
        while self._pending_marks and self._pending_marks[0][0] <= now:
            _, name = self._pending_marks.pop(0)
            await ws.send(tw.serialize_event(tw.MarkEcho(self.stream_sid, name)))
            self.result.marks_echoed.append(name)

    async def _receive(self, ws: websockets.ClientConnection) -> None:
        try:
            await self._read(ws)
        except websockets.ConnectionClosed:
            pass
        if not self._leaving:  # the stream ended, the caller is still on the line: the next verb
            self.result.lost_at.append(time.monotonic())
            self._tasks.append(asyncio.create_task(self._next_verb()))

    async def _next_verb(self) -> None:
        """Run the TwiML after the ended stream: the ``<Redirect>``, whose answer may open a new stream."""
        self._pending_marks.clear()  # a closed stream echoes nothing more
        self._playout_end = time.monotonic()
        doc = self.twiml_doc
        if doc is None or doc.after is None:
            self.result.ended = True
            return
        try:
            self.twiml_doc = doc = await self.webhook.fetch(doc.after, self._form("in-progress"))
        except Exception as exc:  # Twilio: "an application error has occurred", and the call ends
            log.warning("call %s: the voice webhook failed (%r); the call ends", self.call_sid, exc)
            self.result.ended = True
            return
        if doc.stream_url is None or self._leaving:
            self.result.ended = True
            return
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.chunk, self._seq = 0, 3
        self.result.resumed_at.append(time.monotonic())
        try:
            await self._open_stream(doc.stream_url, doc.parameters)
        except (OSError, websockets.WebSocketException) as exc:  # the stream could not start: the next verb
            log.warning("call %s: stream to %s failed (%r)", self.call_sid, doc.stream_url, exc)
            self.result.lost_at.append(time.monotonic())
            await self._next_verb()

    async def _read(self, ws: websockets.ClientConnection) -> None:
        async for raw in ws:
            cmd = tw.parse_command(raw)
            if cmd is None:
                self.result.malformed += 1
                continue
            if cmd.stream_sid != self.stream_sid:
                self.result.malformed += 1
                continue
            now = time.monotonic()
            if isinstance(cmd, tw.SendMedia):
                if len(self.result.resumed_audio_at) < len(self.result.resumed_at):
                    self.result.resumed_audio_at.append(now)
                if (
                    self.result.caller_speech_end_at is not None
                    and self.result.reply_first_audio_at is None
                    and now >= self.result.caller_speech_end_at
                ):
                    self.result.reply_first_audio_at = now
                if self.result.caller_speech_end_at is None:
                    self.result.greeting_bytes += len(cmd.payload)
                else:
                    self.result.reply_bytes += len(cmd.payload)
                self.result.agent_audio.extend(cmd.payload)
                self._playout_end = max(self._playout_end, now) + len(cmd.payload) / TELEPHONY_RATE_HZ
                self._last_agent_audio = now
            elif isinstance(cmd, tw.SendMark):
                self.result.marks_received.append(cmd.name)
                self._pending_marks.append((max(self._playout_end, now), cmd.name))
            elif isinstance(cmd, tw.Clear):
                self.result.clears += 1
                self.result.clear_chunks.append(self.chunk)
                self._playout_end = now
                self._pending_marks = [(now, name) for _, name in self._pending_marks]

    async def connect(self) -> None:
        """Voice webhook, WebSocket, ``connected`` + ``start``; then the 20 ms clock runs."""
        url, params = await self.twiml()
        await self._open_stream(url, params)
        self._tasks.append(asyncio.create_task(self._media_clock()))

    async def _open_stream(self, url: str, params: dict[str, str]) -> None:
        """Open the stream ``url`` (signed as Twilio signs it) and send ``connected`` + ``start``."""
        if self.public_url:  # Twilio signs the TwiML's URL as is; the proxy forwards to base_url
            ws_url = "ws" + self.base_url.removeprefix("http") + urlsplit(url).path
            signed = url
        else:
            ws_url = url.replace("wss://", "ws://") if self.base_url.startswith("http://") else url
            signed = ws_url
        headers = {"X-Twilio-Signature": self.validator.compute_signature(signed, {})} if self.validator else {}
        # No permessage-deflate: base64 μ-law barely compresses, and deflating 50 frames a second
        # each way costs CPU on both ends (py-spy showed it in the gateway's profile).
        ws = await websockets.connect(ws_url, max_size=2**22, additional_headers=headers, compression=None)
        await ws.send(tw.serialize_event(tw.Connected()))
        start = tw.Start(self.stream_sid, self.call_sid, self.account_sid, ("inbound",), params, sequence_number=1)
        await ws.send(tw.serialize_event(start))
        self._ws = ws
        self.result.stream_sid = self.stream_sid
        self.result.streams.append(self.stream_sid)
        self.result.stream_urls.append(url)
        self._tasks.append(asyncio.create_task(self._receive(ws)))

    async def send_raw(self, raw: str | bytes) -> None:
        """Send any frame as is (malformed-input tests)."""
        assert self._ws is not None
        await self._ws.send(raw)

    async def press(self, digits: str) -> None:
        """Send a ``dtmf`` event per digit."""
        for digit in digits:
            await self.send_raw(tw.serialize_event(tw.Dtmf(self.stream_sid, digit)))

    async def hang_up(self) -> None:
        """Send ``stop`` and close the socket."""
        self._leaving = True
        try:
            if self._ws is not None:
                with contextlib.suppress(websockets.ConnectionClosed):
                    await self._ws.send(tw.serialize_event(tw.Stop(self.stream_sid, self.call_sid, self.account_sid)))
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop the clock and receiver and close the socket (no ``stop``)."""
        self._leaving = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await task
        if self._ws is not None:
            await self._ws.close()

    @property
    def closed_by_server(self) -> bool:
        """True once the gateway closed the stream (hang-up)."""
        return self._ws is not None and self._ws.close_code is not None

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Poll ``predicate`` every 20 ms.

        Raises:
            TimeoutError: still false after ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
            await asyncio.sleep(0.02)

    async def wait_greeting(self, timeout_s: float = 30.0, settle_s: float = 1.5) -> None:
        """Wait until the greeting has played and the line has been quiet for ``settle_s``."""
        await self._wait_agent_done(timeout_s, settle_s, "greeting")

    async def run(
        self,
        caller_audio: str | Path,
        greeting_timeout_s: float = 30.0,
        reply_timeout_s: float = 60.0,
        settle_s: float = 1.5,
    ) -> CallResult:
        """Place the call: wait for the greeting to finish, speak ``caller_audio``, wait for the
        reply to finish playing (``settle_s`` of agent silence with every mark echoed), hang up.

        Raises:
            TimeoutError: no greeting or no reply in time.
        """
        frames, speech_end_s = caller_frames(caller_audio)
        await self.connect()
        try:
            await self.wait_greeting(greeting_timeout_s, settle_s)
            self.result.caller_speech_end_at = time.monotonic() + speech_end_s
            self.say(frames)
            await asyncio.sleep(len(frames) * FRAME_S)
            await self._wait_reply(reply_timeout_s, settle_s)
        finally:
            await self.hang_up()
        return self.result

    async def _wait_agent_done(self, timeout_s: float, settle_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            heard = self.result.agent_audio
            done = heard and not self._pending_marks and self.agent_idle_for() >= settle_s
            if done:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no complete {what} from the agent within {timeout_s}s")

    async def _wait_reply(self, timeout_s: float, settle_s: float) -> None:
        """Wait for the answer to start, then until it has played to its end: an end mark
        (``…:end``, the gateway's mark after a reply's last frame) sent after the caller spoke has
        been played and echoed, and the line has been quiet for ``settle_s`` (or the gateway closed
        the stream). Quiet alone is not enough: on a loaded host the next sentence of a long answer
        can take longer than ``settle_s`` to arrive."""
        marks_before = len(self.result.marks_received)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.result.reply_first_audio_at is not None:
                break
            await asyncio.sleep(0.05)
        else:
            raise TimeoutError(f"the agent did not reply within {timeout_s}s")

        def ended() -> bool:
            echoed = set(self.result.marks_echoed)
            new_marks = self.result.marks_received[marks_before:]
            return self.closed_by_server or any(m.endswith(":end") and m in echoed for m in new_marks)

        while time.monotonic() < deadline:
            if ended():
                break
            await asyncio.sleep(0.05)
        if not self.closed_by_server:
            await self._wait_agent_done(max(deadline - time.monotonic(), 0.1), settle_s, "reply")
