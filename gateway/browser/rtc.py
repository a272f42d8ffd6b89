"""The ``/phone`` softphone's WebRTC call as a :class:`~gateway.conversation.transport.Transport`.

WebRTC itself (ICE, DTLS-SRTP, RTP, Opus, the SCTP data channel) is aiortc's
(https://aiortc.readthedocs.io): no RTP is written here. The browser offers one ``sendrecv`` audio
transceiver and a data channel named ``events``; the gateway answers (non-trickle ICE: the answer
holds every candidate it gathered, through the ``GATEWAY_BROWSER__ICE_SERVERS`` STUN/TURN servers).

In: the caller's track (Opus, decoded by aiortc to 48 kHz) is resampled with FFmpeg's resampler
(PyAV) to PCM16 mono 16 kHz :class:`AudioIn`; the data channel carries the protocol's client
messages (:mod:`gateway.browser.protocol`). Out: :class:`AgentTrack`, an aiortc media track that
hands aiortc one 20 ms frame of the agent's audio per tick (silence when there is none; aiortc
encodes it to Opus); marks count as played once the audio before them has been handed out. Text
events go over the data channel (held until it opens).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
from collections.abc import Callable
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from gateway.browser.outbound import Mark, OutboundAudio
from gateway.browser.protocol import client_event, conversation_event, event
from gateway.config import GatewaySettings
from gateway.conversation.transport import (
    AudioFormat,
    AudioIn,
    CallerLeft,
    CallStarted,
    ConversationEvent,
    MarkPlayed,
    PlayoutHooks,
    TransportEvent,
)

log = logging.getLogger(__name__)

INPUT_RATE_HZ = 16000
"""The rate caller audio is resampled to (the VAD's and STT's)."""


def peer_connection(settings: GatewaySettings) -> RTCPeerConnection:
    """A peer connection using the configured ICE servers (``GATEWAY_BROWSER__ICE_SERVERS``)."""
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in settings.browser.ice_servers
    ]
    return RTCPeerConnection(RTCConfiguration(iceServers=servers))


class AgentTrack(MediaStreamTrack):
    """The agent's voice as an aiortc audio track: one PCM16 mono frame per 20 ms, paced on the loop clock.

    Args:
        out: the queued agent audio (frames and marks).
        on_mark: called with each mark once the frames before it have been handed to aiortc.
        hooks: the session's playout hooks (or ``None`` before it binds).
    """

    kind = "audio"

    def __init__(
        self, out: OutboundAudio, on_mark: Callable[[str], None], hooks: Callable[[], PlayoutHooks | None]
    ) -> None:
        super().__init__()
        self.out = out
        self.on_mark = on_mark
        self.hooks = hooks
        self._start: float | None = None
        self._pts = 0
        self._started: set[str] = set()

    async def recv(self) -> av.AudioFrame:
        """The next 20 ms frame (aiortc's sender calls this in a loop).

        Raises:
            MediaStreamError: the track was stopped.
        """
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        fmt = self.out.fmt
        samples = fmt.sample_rate_hz * fmt.frame_ms // 1000
        if self._start is None:
            self._start = loop.time()
        else:
            self._pts += samples
            wait = self._start + self._pts / fmt.sample_rate_hz - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        audio = b""
        while (item := self.out.pop()) is not None:
            if isinstance(item, Mark):  # the frames before it have gone out
                self.on_mark(item.name)
                continue
            audio = item.audio
            hooks, now = self.hooks(), loop.time()
            if hooks is not None:
                if item.reply_id not in self._started:
                    self._started.add(item.reply_id)
                    hooks.on_playout_started(item.reply_id, now)
                hooks.on_frame_sent(audio, now)
            break
        frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
        frame.planes[0].update(audio or bytes(fmt.frame_bytes))
        frame.pts = self._pts
        frame.sample_rate = fmt.sample_rate_hz
        frame.time_base = fractions.Fraction(1, fmt.sample_rate_hz)
        return frame


class WebRTCTransport:
    """One softphone call over an aiortc peer connection (build it before the offer is applied).

    Args:
        pc: the peer connection (:func:`peer_connection`).
        settings: ``browser`` (output rate).
        call_id, from_, to: what :class:`CallStarted` carries.
    """

    input_rate_hz = INPUT_RATE_HZ
    echo_cancelled = True  # the page asks getUserMedia for the browser's echo canceller

    def __init__(self, pc: RTCPeerConnection, settings: GatewaySettings, call_id: str, from_: str, to: str) -> None:
        self.pc = pc
        self.output_format = AudioFormat("pcm16", settings.browser.output_rate_hz, 20)
        self.call_id = call_id
        self._start = CallStarted(call_id=call_id, stream_id=call_id, from_=from_, to=to)
        self._events: asyncio.Queue[TransportEvent | None] = asyncio.Queue()
        self._hooks: PlayoutHooks | None = None
        self.out = OutboundAudio(self.output_format)
        self.track = AgentTrack(self.out, lambda name: self._events.put_nowait(MarkPlayed(name)), lambda: self._hooks)
        self._channel: Any = None
        self._held: list[str] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False
        self._left = False
        self.closed = False
        self.ended_by_client = False
        """The page sent ``end_conversation`` (it waits for ``analysis``)."""
        pc.addTrack(self.track)
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_channel)
        pc.on("connectionstatechange", self._on_state)

    # ---- peer connection events ----------------------------------------------------------------
    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            task = asyncio.create_task(self._consume(track), name=f"rtc-in-{self.call_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _consume(self, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=self.input_rate_hz)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            if not isinstance(frame, av.AudioFrame):
                continue
            for out in resampler.resample(frame):
                if not self.closed:
                    self._events.put_nowait(AudioIn(out.to_ndarray().reshape(-1).copy()))
        self._caller_left()

    def _on_channel(self, channel: Any) -> None:
        self._channel = channel
        channel.on("message", self._on_message)
        if channel.readyState == "open":
            self._flush()
        else:
            channel.on("open", self._flush)

    def _flush(self) -> None:
        held, self._held = self._held, []
        for text in held:
            self._send_text(text)

    def _on_state(self) -> None:
        state = self.pc.connectionState
        log.info("call %s: WebRTC %s", self.call_id, state)
        if state in ("failed", "closed"):
            self._caller_left()

    def _on_message(self, raw: str | bytes) -> None:
        ev = client_event(raw, self.send_event, self.call_id)
        if isinstance(ev, CallerLeft):
            self.ended_by_client = True
            self._caller_left()
        elif ev is not None:
            self._events.put_nowait(ev)

    def _caller_left(self) -> None:
        if not self._left:
            self._left = True
            self._events.put_nowait(CallerLeft())

    # ---- text out --------------------------------------------------------------------------------
    def send_event(self, kind: str, **fields: Any) -> None:
        """Send one JSON event over the data channel (held until it is open)."""
        self._send_text(event(kind, **fields))

    def _send_text(self, text: str) -> None:
        channel = self._channel
        if channel is None or channel.readyState != "open":
            self._held.append(text)
            return
        with contextlib.suppress(Exception):  # the channel just closed: the call is ending
            channel.send(text)

    def emit(self, ev: ConversationEvent) -> None:
        """Send a transcript, agent text or turn end over the data channel."""
        text = conversation_event(ev)
        if text is not None:
            self._send_text(text)

    # ---- Transport --------------------------------------------------------------------------------
    def bind(self, hooks: PlayoutHooks) -> None:
        """Who hears about playout."""
        self._hooks = hooks

    async def receive(self) -> TransportEvent | None:
        """:class:`CallStarted` first, then caller audio, text, marks; ``None`` once closed."""
        if not self._started:
            self._started = True
            return self._start
        if self.closed:
            return None
        return await self._events.get()

    def play(self, audio: bytes, reply_id: str) -> None:
        """Queue PCM16 audio at the output rate of reply ``reply_id``."""
        self.out.play(audio, reply_id)

    def mark(self, name: str) -> None:
        """Queue a mark after the audio queued so far."""
        self.out.mark(name)

    async def clear(self) -> None:
        """Barge-in: drop the queued audio (the track plays silence from its next frame)."""
        self.out.clear()

    def pause(self) -> None:
        """Hold the agent's audio (caller speech over it; :class:`~gateway.browser.outbound.OutboundAudio`)."""
        self.out.pause()

    def resume(self) -> None:
        """Play the held audio on from where it stopped."""
        self.out.resume()

    @property
    def pending(self) -> int:
        """Frames and marks not yet handed to aiortc."""
        return self.out.pending

    async def run_output(self) -> None:
        """aiortc pulls the audio (:class:`AgentTrack`); this only lives as long as the call."""
        await asyncio.Event().wait()

    async def close(self, code: int = 1000) -> None:
        """The call is over: no more events (the peer connection is closed by :meth:`shutdown`)."""
        self.closed = True
        self._events.put_nowait(None)

    async def shutdown(self) -> None:
        """Stop the caller's track reader and close the peer connection (bounded)."""
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(3.0):
                await self.pc.close()
