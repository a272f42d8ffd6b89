"""Streaming TTS client for the hot path: one WebSocket per call to ``WS /v1/audio/speech/stream``.

The protocol is documented at the top of :mod:`services.tts.streaming` (the server). In short:

* open ``ws://HOST:PORT/v1/audio/speech/stream?voice=…&format=mulaw|pcm&sample_rate=…&speed=…``;
  the server answers ``{"type": "ready", …}`` or ``{"type": "error", "error": {…}}`` then closes (1008);
* client → server: ``{"type": "text", "text": …}`` (any fragment), ``{"type": "flush"}`` (end of
  the reply), ``{"type": "cancel"}`` (barge-in);
* server → client: ``{"type": "audio", "segment", "text", "audio": <base64>, …}`` one per
  sentence/clause, in order, a whole number of 20 ms frames each; ``{"type": "flushed"}`` after
  the last audio of a flushed reply; ``{"type": "cancelled", "dropped": […]}`` in answer to a
  cancel (no audio of the cancelled text comes after it); ``{"type": "error", …}`` for a bad
  message or an ``overloaded`` segment (the connection stays open).

:class:`TTSStreamClient` satisfies :class:`gateway.conversation.deps.TextToSpeech`,
:class:`TTSStream` satisfies :class:`gateway.conversation.deps.SpeechStream`. Every failure is an
:class:`shared.errors.UpstreamError` (``service="tts"``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from gateway.conversation.deps import SpokenSegment
from gateway.conversation.transport import AudioFormat
from shared.errors import UpstreamError

log = logging.getLogger(__name__)

STREAM_PATH = "/v1/audio/speech/stream"
SERVER_FRAME_MS = 20
"""The server sends whole 20 ms frames (:mod:`services.tts.streaming`)."""
SERVER_RATES = (8000, 16000, 24000)
_ENCODINGS = {"pcmu": "mulaw", "pcm16": "pcm"}
MAX_MESSAGE_BYTES = 16 * 2**20
"""One ``audio`` message is a whole segment in base64 (≈ 270 kB for 25 s of μ-law 8 kHz)."""


def stream_url(base_url: str, voice: str, fmt: AudioFormat, speed: float = 1.0) -> str:
    """The WebSocket URL for ``fmt`` from the service's HTTP base URL (``http`` → ``ws``, ``https`` → ``wss``).

    Raises:
        UpstreamError: (not retryable) ``fmt`` is one the server cannot produce: another encoding,
            a rate not in 8000/16000/24000 Hz, or a frame size that 20 ms frames do not fill exactly.
    """
    encoding = _ENCODINGS.get(fmt.encoding)
    if encoding is None or fmt.sample_rate_hz not in SERVER_RATES or SERVER_FRAME_MS % fmt.frame_ms:
        raise UpstreamError("tts", f"unsupported audio format {fmt}", retryable=False)
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    query = urlencode({"voice": voice, "format": encoding, "sample_rate": fmt.sample_rate_hz, "speed": speed})
    return f"{base}{STREAM_PATH}?{query}"


def _error_message(msg: dict[str, Any]) -> tuple[str, str | None]:
    err = msg.get("error")
    if isinstance(err, dict):
        return str(err.get("message") or err), (str(err["code"]) if err.get("code") else None)
    return str(err), None


class _Connection:
    """One open WebSocket and the task reading it into ``inbox`` (JSON objects, in order).

    When the socket ends, the reader puts an :class:`UpstreamError` in the inbox and keeps it in
    ``broken``; every later :meth:`receive` raises it.
    """

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.inbox: asyncio.Queue[dict[str, Any] | UpstreamError] = asyncio.Queue()
        self.broken: UpstreamError | None = None
        self.reader = asyncio.create_task(self._read(), name="tts-stream-reader")

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                try:
                    msg = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    msg = None
                if not isinstance(msg, dict):
                    msg = {"type": "error", "error": {"message": f"not a JSON object: {raw[:80]!r}"}}
                self.inbox.put_nowait(msg)
            self._fail(UpstreamError("tts", f"the server closed the stream ({self.ws.close_code})", retryable=True))
        except ConnectionClosed as exc:
            self._fail(UpstreamError("tts", f"connection lost: {exc}", retryable=True))
        except asyncio.CancelledError:
            self._fail(UpstreamError("tts", "the stream is closed", retryable=True))
            raise
        except Exception as exc:  # anything else the socket raises ends the connection too
            self._fail(UpstreamError("tts", f"connection failed: {exc!r}", retryable=True))

    def _fail(self, err: UpstreamError) -> None:
        if self.broken is None:
            self.broken = err
            self.inbox.put_nowait(err)

    async def receive(self) -> dict[str, Any]:
        """The next server message. Raises :class:`UpstreamError` once the connection is gone."""
        item = await self.inbox.get()
        if isinstance(item, UpstreamError):
            self.inbox.put_nowait(item)
            raise item
        return item

    async def send(self, message: dict[str, Any]) -> None:
        """Send one JSON message. Raises :class:`UpstreamError` if the connection is gone."""
        if self.broken is not None:
            raise self.broken
        try:
            await self.ws.send(json.dumps(message))
        except ConnectionClosed as exc:
            self._fail(UpstreamError("tts", f"connection lost: {exc}", retryable=True))
            assert self.broken is not None
            raise self.broken from exc

    def abort(self) -> None:
        """Drop the connection at once (the server sees a disconnect and cancels everything)."""
        self.reader.cancel()
        self.ws.transport.abort()

    async def close(self) -> None:
        """Close politely (bounded by the connection's ``close_timeout``), then stop the reader."""
        try:
            await self.ws.close()
        finally:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader


class TTSStream:
    """One call's synthesis channel over the TTS WebSocket: many replies, one at a time.

    Satisfies :class:`gateway.conversation.deps.SpeechStream`. Build it with
    :meth:`TTSStreamClient.open`. A lost connection fails the reply in progress; the next
    :meth:`speak` connects again.

    Args:
        url: the ``ws://…/v1/audio/speech/stream?…`` URL (:func:`stream_url`).
        fmt: the audio format the URL asks for (segments come in it).
        timeout_s: per-message timeout, seconds: how long to wait for ``ready`` or, once the whole
            reply's text is sent, for each next message.
        cancel_timeout_s: how long a cancel waits for the server's ``cancelled``; past it the
            connection is dropped (and made again by the next reply).
    """

    def __init__(self, url: str, fmt: AudioFormat, timeout_s: float = 15.0, cancel_timeout_s: float = 2.0) -> None:
        self.url = url
        self.fmt = fmt
        self.timeout_s = timeout_s
        self.cancel_timeout_s = cancel_timeout_s
        self.ready: dict[str, Any] = {}
        """The server's ``ready`` message (voice, format, sample_rate, sample_width, frame_ms)."""
        self.connects = 0
        """How many connections this stream has made (1 unless one was lost or dropped)."""
        self._conn: _Connection | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    async def connect(self) -> None:
        """Open the WebSocket (closing any earlier one) and wait for ``ready``.

        Raises:
            UpstreamError: retryable when the service is unreachable, does not answer within
                ``timeout_s`` or drops the connection; not retryable when it refuses the voice or
                the format (the server's message, e.g. the list of voices) or the stream is closed.
        """
        if self._closed:
            raise UpstreamError("tts", "the stream is closed", retryable=False)
        self._drop()
        ws: ClientConnection | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                ws = await connect(
                    self.url,
                    open_timeout=None,
                    close_timeout=self.cancel_timeout_s,
                    max_size=MAX_MESSAGE_BYTES,
                    compression=None,
                    proxy=None,
                )
                first = json.loads(await ws.recv())
        except TimeoutError as exc:
            await self._discard(ws)
            raise UpstreamError("tts", f"no ready from the stream within {self.timeout_s}s", retryable=True) from exc
        except InvalidStatus as exc:
            await self._discard(ws)
            status = exc.response.status_code
            raise UpstreamError.from_status("tts", status, exc.response.body.decode(errors="replace")) from exc
        except (OSError, InvalidHandshake, InvalidURI, ConnectionClosed, ValueError) as exc:
            await self._discard(ws)
            raise UpstreamError("tts", f"stream unreachable: {exc!r}", retryable=True) from exc
        except BaseException:
            await self._discard(ws)
            raise
        if not isinstance(first, dict) or first.get("type") != "ready":
            await self._discard(ws)
            message = _error_message(first)[0] if isinstance(first, dict) else repr(first)
            raise UpstreamError("tts", f"stream refused: {message}", retryable=False)
        self.ready = first
        self.connects += 1
        self._conn = _Connection(ws)

    async def speak(self, text: AsyncIterator[str]) -> AsyncIterator[SpokenSegment]:
        """Stream text deltas in and audio out, one :class:`SpokenSegment` per sentence/clause.

        A sender task forwards each delta as a ``text`` message, then ``flush``; segments are
        yielded (``text`` exactly as the server cut it from what was sent, ``audio`` base64-decoded:
        whole frames of :attr:`fmt`) until ``flushed``. Replies on one stream run one at a time: a
        second ``speak`` waits until the first has ended or been cancelled.

        Stopping early (closing the iterator, e.g. ``contextlib.aclosing``, or cancelling the task
        that consumes it: barge-in) sends ``cancel`` and discards messages until ``cancelled``
        (at most ``cancel_timeout_s``, else the connection is dropped), so the next reply starts
        clean and no audio of this one is yielded afterwards.

        Raises:
            UpstreamError: retryable for an ``error`` message during the reply (``overloaded``,
                a failed synthesis, …), a timeout or a lost connection; whatever the text source
                raised (e.g. the LLM's :class:`UpstreamError`), re-raised after cancelling synthesis.
        """
        async with self._lock:
            conn = await self._connection()
            sender = asyncio.create_task(self._send_text(conn, text), name="tts-stream-sender")
            finished = False
            try:
                while True:
                    msg = await self._next(conn, sender)
                    kind = msg.get("type")
                    if kind == "audio":
                        yield self._segment(msg)
                    elif kind == "flushed":
                        finished = True
                        return
                    elif kind == "error":
                        message, code = _error_message(msg)
                        raise UpstreamError("tts", f"{code or 'error'}: {message}", retryable=True)
                    # anything else ("cancelled" of an earlier reply): not this reply's, ignored
            finally:
                if not finished:
                    await self._abandon(conn, sender)

    async def aclose(self) -> None:
        """Close the channel (end of call); idempotent. A reply in progress fails with UpstreamError."""
        if self._closed:
            return
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    # -- internals ---------------------------------------------------------------------------

    async def _connection(self) -> _Connection:
        if self._closed:
            raise UpstreamError("tts", "the stream is closed", retryable=False)
        if self._conn is None or self._conn.broken is not None:
            await self.connect()
        assert self._conn is not None
        return self._conn

    def _segment(self, msg: dict[str, Any]) -> SpokenSegment:
        try:
            audio = base64.b64decode(msg.get("audio") or "", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise UpstreamError("tts", f"bad audio in segment {msg.get('segment')}", retryable=True) from exc
        return SpokenSegment(str(msg.get("text", "")), audio)

    @staticmethod
    async def _send_text(conn: _Connection, text: AsyncIterator[str]) -> None:
        async for delta in text:
            if delta:
                await conn.send({"type": "text", "text": delta})
        await conn.send({"type": "flush"})

    async def _next(self, conn: _Connection, sender: asyncio.Task[None]) -> dict[str, Any]:
        """The next server message; raises what the sender raised (the text source's error).

        No timeout while text is still coming (the server may rightly be silent, waiting for the
        end of a sentence); ``timeout_s`` per message once the flush is sent.
        """
        get = asyncio.ensure_future(conn.receive())
        try:
            while not sender.done():
                await asyncio.wait({get, sender}, return_when=asyncio.FIRST_COMPLETED)
                if get.done():
                    return get.result()
            exc = sender.exception()
            if exc is not None:
                raise exc
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await get
            except TimeoutError as exc:
                if conn is self._conn:
                    self._drop()  # a server that went quiet: no point in a polite cancel
                raise UpstreamError(
                    "tts", f"no message from the stream within {self.timeout_s}s", retryable=True
                ) from exc
        finally:
            get.cancel()

    async def _abandon(self, conn: _Connection, sender: asyncio.Task[None]) -> None:
        """Stop a reply that did not reach ``flushed``: stop sending, ``cancel``, drain to ``cancelled``.

        Bounded by ``cancel_timeout_s``; on timeout, a lost connection or a second cancellation
        the connection is dropped instead (the next reply connects again).
        """
        sender.cancel()
        try:
            async with asyncio.timeout(self.cancel_timeout_s):
                await asyncio.wait({sender})
                if conn is not self._conn or conn.broken is not None:
                    return
                await conn.send({"type": "cancel"})
                while (await conn.receive()).get("type") != "cancelled":
                    pass
        except (TimeoutError, UpstreamError) as exc:
            log.warning("tts stream: cancel did not complete (%s); dropping the connection", exc)
            self._drop(conn)
        except BaseException:
            self._drop(conn)
            raise
        finally:
            if sender.done() and not sender.cancelled():
                sender.exception()  # retrieved: the caller already got it (or does not care)

    def _drop(self, conn: _Connection | None = None) -> None:
        """Abort the current connection (only if it is ``conn``, when given)."""
        current = self._conn
        if current is None or (conn is not None and conn is not current):
            return
        self._conn = None
        current.abort()

    @staticmethod
    async def _discard(ws: ClientConnection | None) -> None:
        if ws is not None:
            ws.transport.abort()


class TTSStreamClient:
    """Opens one :class:`TTSStream` per call on the TTS service's WebSocket.

    Satisfies :class:`gateway.conversation.deps.TextToSpeech`.

    Args:
        base_url: the service's HTTP base URL, e.g. ``http://127.0.0.1:8002``.
        timeout_s: per-message timeout, seconds (the gateway's ``tts_timeout_s``).
        speed: speaking rate, 0.5–2.0.
        cancel_timeout_s: bound on waiting for ``cancelled`` after a barge-in, seconds.
    """

    def __init__(
        self, base_url: str, timeout_s: float = 15.0, speed: float = 1.0, cancel_timeout_s: float = 2.0
    ) -> None:
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.speed = speed
        self.cancel_timeout_s = cancel_timeout_s

    async def open(self, voice: str, fmt: AudioFormat) -> TTSStream:
        """A connected channel speaking ``voice``; segments come as ``fmt`` (``pcmu`` → the server's
        ``mulaw``, ``pcm16`` → ``pcm``, at ``fmt.sample_rate_hz``).

        Raises:
            UpstreamError: retryable when the service is unreachable or times out; not retryable
                when it refuses the voice (the server's message lists the voices) or the format.
        """
        url = stream_url(self.base_url, voice, fmt, self.speed)
        stream = TTSStream(url, fmt, self.timeout_s, self.cancel_timeout_s)
        await stream.connect()
        return stream
