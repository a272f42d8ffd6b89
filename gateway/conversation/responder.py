"""Replying: the caller's utterance → STT → corrections → streamed LLM → the speaker.

:class:`Responder` owns the call's replies: one reply task at a time (a new one cancels the
last), the :class:`~gateway.conversation.replies.Reply` handles by id, and the caller audio
carried over when the caller went on talking before an answer was heard, and the call's early
transcript (:class:`~gateway.conversation.early_stt.EarlyTranscript`). Every upstream failure
becomes a spoken apology (or, with no voice at all, silence) and an unanswered turn, never a
dropped call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np

from gateway.conversation.context import CallContext, now
from gateway.conversation.deps import SpeechToText
from gateway.conversation.early_stt import EarlyTranscript
from gateway.conversation.endpointing import PauseStarted, SpeechEnded, SpeechResumed
from gateway.conversation.hallucinations import hallucination
from gateway.conversation.labels import SpeakerLabelFilter
from gateway.conversation.language import CallLanguage
from gateway.conversation.llm_tools import ToolCall, openai_tools
from gateway.conversation.replies import Reply
from gateway.conversation.speaker import Speaker, aclose_iterator
from gateway.conversation.transcript import Turn
from gateway.conversation.transport import CallerTranscript
from gateway.conversation.turns import Event, State
from gateway.conversation.vad import SAMPLE_RATE_HZ as VAD_RATE_HZ
from gateway.metrics import DROPPED_TRANSCRIPTS, ERRORS, STAGE_LATENCY
from shared.audio import wav_bytes
from shared.errors import UpstreamError

log = logging.getLogger(__name__)

APOLOGY = "Sorry, I'm having trouble hearing you right now. Could you say that again?"

RunTools = Callable[[list[ToolCall], Reply], Awaitable[None]]


class InLanguage:
    """The STT, asked for the call's language (:meth:`CallLanguage.for_stt`) unless a caller names one."""

    def __init__(self, stt: SpeechToText, language: CallLanguage) -> None:
        self.stt = stt
        self.language = language

    async def transcribe(self, pcm16: np.ndarray, sample_rate: int, language: str | None = None) -> str:
        """:meth:`SpeechToText.transcribe` in the call's language."""
        return await self.stt.transcribe(pcm16, sample_rate, language or self.language.for_stt())


class Responder:
    """Makes the agent's replies for one call.

    Args:
        ctx: the live call (:class:`~gateway.conversation.context.CallContext`).
        speaker: the call's voice.
        run_tools: carries out the model's tool calls after (or instead of) a spoken reply.
    """

    def __init__(self, ctx: CallContext, speaker: Speaker, run_tools: RunTools) -> None:
        self.ctx = ctx
        self.speaker = speaker
        self.run_tools = run_tools
        self.replies: dict[str, Reply] = {}
        self.current: Reply | None = None
        """The newest reply (the one a barge-in interrupts)."""
        self.task: asyncio.Task[Any] | None = None
        self.carry_audio: np.ndarray | None = None
        """Caller audio whose transcription was cancelled because the caller went on talking (16 kHz)."""
        self.stt = InLanguage(ctx.deps.stt, ctx.language)
        """The call's STT, in its language."""
        self.early = EarlyTranscript(self.stt, VAD_RATE_HZ, ctx.spawn)
        self._seq = 0
        self.dropped = 0
        """Transcripts dropped as Whisper's hallucinations on noise (:meth:`screen`)."""

    # ---- what STT heard ------------------------------------------------------------------
    def screen(self, heard: str) -> str:
        """``heard`` (a :class:`~gateway.conversation.deps.Heard` with Whisper's scores, or plain text),
        or ``""`` when it is a hallucination on noise (:mod:`gateway.conversation.hallucinations`):
        dropped, counted, logged."""
        reason = hallucination(
            heard,
            getattr(heard, "no_speech_prob", None),
            getattr(heard, "avg_logprob", None),
            getattr(heard, "language", None),
        )
        if reason is None:
            if heard and self.ctx.language.heard(getattr(heard, "language", None)):
                language = self.ctx.language
                log.info("call %s: the caller speaks %s", self.ctx.call_sid, language.spoken)
                self.speaker.set_voice(language.voice(self.ctx.profile.voice))  # the reply to it already speaks it
            return heard
        self.dropped += 1
        DROPPED_TRANSCRIPTS.labels(reason).inc()
        log.info("call %s: dropped %r (%s)", self.ctx.call_sid, str(heard), reason)
        return ""

    # ---- the reply task ------------------------------------------------------------------
    def busy(self) -> bool:
        """A reply is being made (transcribed, generated or synthesised)."""
        return self.task is not None and not self.task.done()

    def start(self, coro: Coroutine[Any, Any, Any], name: str = "reply") -> None:
        """Cancel the reply in progress and run ``coro`` as the new one."""
        self.cancel()
        self.task = self.ctx.spawn(coro, name)

    def cancel(self) -> None:
        """Cancel the reply task (its LLM and TTS streams close at once)."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.task = None

    def new_reply(self, kind: str) -> Reply:
        """A fresh reply ``<kind>-<n>``, now the current one."""
        self._seq += 1
        reply = Reply(reply_id=f"{kind}-{self._seq}")
        self.replies[reply.reply_id] = reply
        self.current = reply
        return reply

    # ---- entry points ----------------------------------------------------------------------
    def answer_utterance(self, utt: SpeechEnded, detected_at: float) -> None:
        """Answer the utterance the endpointer just closed (``detected_at``: loop time).

        Audio of an earlier utterance whose reply was cancelled before it was heard is prepended,
        taken now: a reply cancelled before it ever ran must still carry it.
        """
        audio = utt.audio if self.carry_audio is None else np.concatenate([self.carry_audio, utt.audio])
        self.carry_audio = audio
        self.start(self._respond(utt, audio, detected_at))

    def on_pause(self, event: PauseStarted | SpeechResumed) -> None:
        """The caller paused (transcribe early what the turn would end with, carried audio first)
        or spoke again in that pause (drop it). Not while the agent speaks: speech over it is an
        interjection, judged by its own transcription."""
        if (
            isinstance(event, SpeechResumed)
            or self.ctx.machine.state is State.SPEAKING
            or not self.ctx.s.listening.early_stt
        ):
            self.early.cancel()
            return
        carry = self.carry_audio
        self.early.start(event.audio if carry is None else np.concatenate([carry, event.audio]))

    def answer_text(self, text: str, user_turn: Turn | None = None) -> None:
        """Answer caller input that needs no STT (DTMF, typed text, an already transcribed interjection)."""
        self.start(self._respond_text(text, {}, user_turn=user_turn))

    async def greet(self) -> Reply:
        """Say the profile's greeting (or its rejection message); it enters the history."""
        profile = self.ctx.profile
        reply = await self.say("greeting", profile.reject_message or profile.greeting)
        self.ctx.transcript.agent_said(reply)
        return reply

    def prewarm(self) -> None:
        """Start prefilling the LLM with this call's prompt (system prompt + history so far, tools)
        as its own task, when ``GATEWAY_LLM__PREWARM`` is on: the first reply then skips it."""
        if self.ctx.s.llm.prewarm:
            self.ctx.spawn(self.ctx.deps.llm.prewarm(*self._llm_request("")), "prewarm")

    def _llm_request(self, text: str) -> tuple[list[dict[str, str]], list[dict[str, Any]] | None]:
        """The messages and tools that answer ``text`` (the prewarm's are the same but for ``text``,
        so the server's cached prefix is the reply's)."""
        ctx = self.ctx
        system = ctx.profile.system_prompt
        if instruction := ctx.language.instruction():
            system = f"{system}\n\n{instruction}"
        return ctx.transcript.messages(system, text), openai_tools(ctx.s.agent.tools) or None

    async def say(self, kind: str, text: str) -> Reply:
        """Speak a fixed text as its own reply (greeting, apology, re-prompt, goodbye); never raises."""
        reply = self.new_reply(kind)

        async def once() -> AsyncIterator[str]:
            yield text

        try:
            await self._speak(reply, once())
        except UpstreamError as exc:
            ERRORS.labels(exc.service).inc()
            log.error("call %s: could not say the %s: %s", self.ctx.call_sid, kind, exc)
        return reply

    # ---- one reply -----------------------------------------------------------------------
    async def _respond(self, utt: SpeechEnded, audio: np.ndarray, detected_at: float) -> None:
        """Reply to one utterance (``audio``: PCM16 16 kHz, carried audio first)."""
        ctx = self.ctx
        latency: dict[str, float] = {"endpointing_ms": float(utt.detected_ms - utt.end_ms)}
        speech_end = detected_at - latency["endpointing_ms"] / 1000
        if ctx.s.recording.debug_audio_dir:
            self._dump_utterance(audio)
        try:
            heard = await self._transcribe(audio, latency)
        except UpstreamError as exc:
            self.carry_audio = None
            ERRORS.labels("stt").inc()
            log.error("call %s: STT failed: %s", ctx.call_sid, exc)
            ctx.transcript.unanswered(Turn.caller(""), "stt")
            ctx.attention.owe_answer()
            await self.say("apology", ctx.language.line("apology", APOLOGY))
            return
        self.carry_audio = None
        log.info(
            "call %s: heard %r (%.1fs, STT %.0f ms)", ctx.call_sid, heard, audio.size / VAD_RATE_HZ, latency["stt_ms"]
        )
        text = f"{ctx.transcript.carry_text} {heard}".strip()
        if not text:
            ctx.machine.handle(Event.REPLY_ABANDONED)
            ctx.persist_state()
            return
        ctx.transcript.carry_text = text  # kept if the caller goes on talking before we answer
        corrected = ctx.profile.corrections.apply(text)
        ctx.emit(CallerTranscript(corrected))
        ended_at = time.time() - (now() - speech_end)  # when the caller stopped talking, Unix time
        user_turn = Turn.caller(
            corrected,
            started_at=ended_at - (utt.end_ms - utt.start_ms) / 1000,
            ended_at=ended_at,
            raw_text=text,
            audio_ms=audio.size * 1000 // VAD_RATE_HZ,
        )
        await self._respond_text(corrected, latency, speech_end=speech_end, user_turn=user_turn)

    async def _transcribe(self, audio: np.ndarray, latency: dict[str, float]) -> str:
        """The text of ``audio`` (PCM16 16 kHz): the early transcript if it was made of this very audio
        (awaited if still in flight), else, or if it failed, a transcription now; ``""`` for a
        hallucination on noise (:meth:`screen`).

        Records ``stt_ms`` (the wait from now, the endpoint decision, for the text: what the caller
        waits) and ``stt_total_ms`` (the transcription's own duration, sent → answered), in ``latency``.

        Raises:
            UpstreamError: the (normal) transcription failed.
        """
        ctx, t0 = self.ctx, now()
        early = self.early.take(audio)
        if early is not None:
            try:
                heard = await early.text()
            except UpstreamError as exc:
                ERRORS.labels("stt").inc()
                log.warning("call %s: early STT failed (%s); transcribing again", ctx.call_sid, exc)
            else:
                latency["stt_ms"], latency["stt_total_ms"] = (now() - t0) * 1000, early.duration_ms
                return self.screen(heard)
        t1 = now()
        heard = await self.stt.transcribe(audio, VAD_RATE_HZ)
        latency["stt_ms"], latency["stt_total_ms"] = (now() - t0) * 1000, (now() - t1) * 1000
        return self.screen(heard)

    async def _respond_text(
        self,
        text: str,
        latency: dict[str, float],
        speech_end: float | None = None,
        user_turn: Turn | None = None,
    ) -> None:
        """Stream the LLM's answer to ``text`` into the speaker; run its tool calls after.

        ``speech_end``: loop time the caller stopped talking (for voice-to-voice latency).
        """
        ctx = self.ctx
        reply = self.new_reply("reply")
        reply.latency_ms.update(latency)
        reply.speech_end = speech_end
        messages, tools = self._llm_request(text)
        turn = user_turn or Turn.caller(text)
        calls: list[ToolCall] = []

        async def spoken() -> AsyncIterator[str]:
            stream = ctx.deps.llm.stream(messages, tools)
            label = SpeakerLabelFilter()
            try:
                async for item in stream:
                    if isinstance(item, ToolCall):
                        calls.append(item)
                    elif text := label.push(item):
                        yield text
                if rest := label.end():
                    yield rest
            finally:  # a barge-in closes the LLM's stream at once (its request is cancelled)
                await aclose_iterator(stream)

        try:
            await self._speak(reply, spoken(), llm_started=now())
        except UpstreamError as exc:
            ERRORS.labels(exc.service).inc()
            log.error("call %s: reply failed: %s", ctx.call_sid, exc)
            if not reply.spoken and not calls:
                ctx.transcript.unanswered(turn, exc.service)
                ctx.attention.owe_answer()
                await self.say("apology", ctx.language.line("apology", APOLOGY))
                return
        finally:
            if reply.spoken or calls:  # an answer is (being) given: the exchange enters the history
                ctx.transcript.commit_exchange(text, turn, reply)
        if calls:
            await self.run_tools(calls, reply)
        if speech_end is not None and reply.spoken:
            await reply.wait_for_first_frame()  # its voice-to-voice latency is known from then on
        for key, value in reply.latency_ms.items():
            STAGE_LATENCY.labels(key.removesuffix("_ms")).observe(value / 1000)

    async def _speak(self, reply: Reply, deltas: AsyncIterator[str], llm_started: float | None = None) -> None:
        """Speak a text stream; a reply that said nothing is abandoned (the floor goes back).

        Raises:
            UpstreamError: the LLM or TTS failed.
        """
        try:
            await self.speaker.speak(reply, deltas, llm_started)
        finally:
            if not reply.spoken:
                self.ctx.machine.handle(Event.REPLY_ABANDONED)
                self.ctx.persist_state()

    def _dump_utterance(self, audio: np.ndarray) -> None:
        folder = Path(str(self.ctx.s.recording.debug_audio_dir))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{self.ctx.call_sid}-{self._seq}.wav").write_bytes(wav_bytes(audio, VAD_RATE_HZ))
