"""Agent speech: a reply's text stream → the call's TTS channel → the transport, a mark per segment.

The TTS service splits the text into sentences (the one splitter) and returns each segment's
audio already in the transport's format (Twilio: μ-law 8 kHz in 20 ms frames), so the gateway
neither splits, resamples nor encodes: it queues each segment's audio, then a mark
``<reply_id>:<i>`` that the caller's side echoes once the segment has played, and
``<reply_id>:end`` after the last one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from gateway.conversation.context import now
from gateway.conversation.deps import SpeechStream, TextToSpeech
from gateway.conversation.replies import Reply
from gateway.conversation.transport import AgentText, Transport
from shared.errors import UpstreamError

log = logging.getLogger(__name__)

_BREAKS = (".", "!", "?", ";", ":", "\n")


async def aclose_iterator(iterator: AsyncIterator[object]) -> None:
    """Close an async generator now (``async for`` does not): its ``finally`` runs and the stream
    it reads (an LLM or TTS response) is released. A no-op for other iterators, for one already
    closed, and for one that another task is still running (its owner closes it)."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(RuntimeError):
            await aclose()


class Speaker:
    """One call's voice: opens the TTS channel on first use and speaks replies one at a time.

    Args:
        tts: opens the call's synthesis channel (:class:`~gateway.conversation.deps.TextToSpeech`).
        transport: where the audio and marks go (its ``output_format`` is what the TTS returns).
        voice: the agent's voice.
    """

    def __init__(self, tts: TextToSpeech, transport: Transport, voice: str) -> None:
        self.tts = tts
        self.transport = transport
        self.voice = voice
        self._channel: SpeechStream | None = None
        self._stale: list[SpeechStream] = []
        """Channels of an earlier voice, closed when the next reply opens its own."""
        self._lock = asyncio.Lock()

    def set_voice(self, voice: str) -> None:
        """Speak in ``voice`` from the next reply on (the call's language was detected): the next reply
        opens a new channel; a reply being spoken finishes on the old one, closed then."""
        if voice == self.voice:
            return
        self.voice = voice
        if self._channel is not None:
            self._stale.append(self._channel)
            self._channel = None

    async def _open(self) -> SpeechStream:
        while self._stale:
            await self._close(self._stale.pop())
        if self._channel is None:
            self._channel = await self.tts.open(self.voice, self.transport.output_format)
        return self._channel

    async def speak(self, reply: Reply, deltas: AsyncIterator[str], llm_started: float | None = None) -> None:
        """Speak ``deltas`` (LLM tokens or one fixed text) as ``reply``.

        Records ``llm_ttft_ms`` (when ``llm_started``, loop time, is given),
        ``llm_first_text_ms`` (from the first delta to the first sentence's text being complete, or to
        the latest delta when the first audio came before that) and ``tts_first_audio_ms`` (from
        there to the first audio) in ``reply.latency_ms``, ms. The end mark is queued when the text
        ended or an upstream failed (segments already queued still play), never after an interruption.
        Cancelling the task (barge-in) closes the TTS reply and the text source at once.

        Raises:
            UpstreamError: the TTS channel could not be opened, synthesis failed, or the text
                source (the LLM) failed.
        """
        async with self._lock:
            marks: dict[str, float] = {}
            text = self._timed(deltas, marks, llm_started, reply)
            try:
                channel, source = await self._open_while_generating(text)
                segments = channel.speak(source)
                try:
                    async for segment in segments:
                        if reply.interrupted:
                            break
                        ready = marks.get("text_ready", marks.get("last_delta"))
                        if not reply.spoken and ready is not None:
                            reply.latency_ms["tts_first_audio_ms"] = (now() - ready) * 1000
                            if "first_delta" in marks:
                                reply.latency_ms["llm_first_text_ms"] = (ready - marks["first_delta"]) * 1000
                        mark = reply.mark_for(len(reply.segments))
                        self.transport.play(segment.audio, reply.reply_id)
                        reply.add_segment(mark, segment.text)
                        self.transport.mark(mark)
                finally:
                    await aclose_iterator(segments)
            except UpstreamError:
                self._finish(reply)
                raise
            finally:
                await aclose_iterator(text)
            self._finish(reply)

    async def _open_while_generating(self, text: AsyncIterator[str]) -> tuple[SpeechStream, AsyncIterator[str]]:
        """The channel, and the text to send it. When the channel must (re)connect, the text
        source starts at once (the LLM's prefill overlaps the connect) and its first delta is
        handed on once the channel is up.

        Raises:
            UpstreamError: the channel could not be opened (the text source is closed).
        """
        if self._channel is not None:
            return self._channel, text
        first = asyncio.ensure_future(anext(text, None))
        await asyncio.sleep(0)  # let the text source send its request before we wait on the connect
        try:
            channel = await self._open()
        except BaseException:
            first.cancel()
            with contextlib.suppress(BaseException):
                await first
            raise

        async def source() -> AsyncIterator[str]:
            head = await first
            if head is None:
                return
            yield head
            async for delta in text:
                yield delta

        return channel, source()

    def _finish(self, reply: Reply) -> None:
        if reply.interrupted:
            return
        if reply.spoken:
            self.transport.mark(reply.end_mark)
        reply.queued_all()

    async def _timed(
        self, deltas: AsyncIterator[str], marks: dict[str, float], llm_started: float | None, reply: Reply
    ) -> AsyncIterator[str]:
        """``deltas``, noting when the first arrived, when the first sentence's text was complete
        (a sentence break, or the end of the text) and when the latest came (the fallback when the
        server cut its first segment at a clause before any sentence break). Each delta, then the
        whole text once it ended, is shown on the caller's side (:class:`AgentText`)."""
        said: list[str] = []
        try:
            async for delta in deltas:
                if llm_started is not None and "llm_ttft_ms" not in reply.latency_ms:
                    reply.latency_ms["llm_ttft_ms"] = (now() - llm_started) * 1000
                marks.setdefault("first_delta", now())
                marks["last_delta"] = now()
                if "text_ready" not in marks and any(b in delta for b in _BREAKS):
                    marks["text_ready"] = now()
                said.append(delta)
                self.transport.emit(AgentText(reply.reply_id, delta))
                yield delta
            marks.setdefault("text_ready", now())
            self.transport.emit(AgentText(reply.reply_id, "".join(said).strip(), is_complete=True))
        finally:
            await aclose_iterator(deltas)

    async def aclose(self) -> None:
        """Close the TTS channel (end of call); idempotent."""
        channel, self._channel = self._channel, None
        for old in [*self._stale, *([channel] if channel is not None else [])]:
            await self._close(old)
        self._stale = []

    @staticmethod
    async def _close(channel: SpeechStream) -> None:
        try:
            async with asyncio.timeout(2.0):
                await channel.aclose()
        except Exception as exc:  # the call is over (or a new channel opens) either way
            log.debug("closing the TTS channel failed: %r", exc)
