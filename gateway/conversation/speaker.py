"""Agent speech: streamed text → sentences → TTS → paced μ-law frames with a mark per sentence."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gateway.conversation.sentences import SentenceSplitter
from gateway.telephony.playback import Playback
from gateway.upstream.speech import TTSClient
from shared.audio import TELEPHONY_RATE_HZ, Resampler, split_frames, ulaw_encode
from shared.errors import UpstreamError


@dataclass
class Reply:
    """One agent utterance: sentences queued with their marks, and what Twilio confirmed played."""

    reply_id: str
    sentences: list[tuple[str, str]] = field(default_factory=list)
    """(mark name, sentence text) in playback order."""
    acked: set[str] = field(default_factory=set)
    latency_ms: dict[str, float] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    recorded: bool = False
    interrupted: bool = False
    history_msg: dict[str, str] | None = None
    """The assistant message in the LLM history, updated to the heard text on barge-in."""

    @property
    def end_mark(self) -> str:
        """The mark queued after the reply's last frame."""
        return f"{self.reply_id}:end"

    def text(self) -> str:
        """Everything the agent meant to say."""
        return " ".join(s for _, s in self.sentences)

    def heard_text(self) -> str:
        """Only sentences whose marks Twilio echoed (the caller heard them)."""
        return " ".join(s for m, s in self.sentences if m in self.acked)


class Speaker:
    """Turns a text stream into queued telephone audio for one call.

    Args:
        tts: TTS client (PCM16 at the engine's rate, 24 kHz for Kokoro).
        playback: the call's outbound pacer.
    """

    def __init__(self, tts: TTSClient, playback: Playback) -> None:
        self.tts = tts
        self.playback = playback

    async def speak(
        self, reply: Reply, deltas: AsyncIterator[str], voice: str, llm_started: float | None = None
    ) -> None:
        """Split ``deltas`` into sentences as they complete and synthesise each while the LLM
        keeps generating; queue each sentence's frames followed by a mark, and ``<id>:end`` last.

        Records ``llm_ttft_ms`` (if ``llm_started``) and ``tts_first_audio_ms`` in ``reply.latency_ms``.

        Raises:
            UpstreamError: the text source (LLM) or TTS failed; sentences already queued still play.
        """
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        async def produce() -> None:
            splitter = SentenceSplitter()
            try:
                async for delta in deltas:
                    if llm_started is not None and "llm_ttft_ms" not in reply.latency_ms:
                        reply.latency_ms["llm_ttft_ms"] = (time.monotonic() - llm_started) * 1000
                    for sentence in splitter.push(delta):
                        queue.put_nowait(sentence)
                for sentence in splitter.flush():
                    queue.put_nowait(sentence)
            finally:
                queue.put_nowait(None)

        async def consume() -> None:
            resampler: Resampler | None = None
            index = 0
            while (sentence := await queue.get()) is not None:
                t0 = time.monotonic()
                pcm, rate = await self.tts.synthesize(sentence, voice)
                if index == 0:
                    reply.latency_ms["tts_first_audio_ms"] = (time.monotonic() - t0) * 1000
                resampler = resampler or Resampler(rate, TELEPHONY_RATE_HZ)
                self.playback.enqueue_audio(split_frames(ulaw_encode(resampler.process(pcm))), reply.reply_id)
                mark = f"{reply.reply_id}:{index}"
                reply.sentences.append((mark, sentence))
                self.playback.enqueue_mark(mark)
                index += 1
            if resampler is not None:
                self.playback.enqueue_audio(split_frames(ulaw_encode(resampler.flush())), reply.reply_id)
                self.playback.enqueue_mark(reply.end_mark)

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(produce())
                tg.create_task(consume())
        except* UpstreamError as group:
            raise group.exceptions[0] from None
