"""One phone call over a Twilio Media Streams WebSocket.

:class:`CallSession` owns every task of the call (a :class:`~gateway.conversation.tasks.TaskScope`, whose close
is bounded even when a library swallows a cancel): the receive loop, the outbound pacer, and one
reply task at a time (STT → corrections → streamed LLM → sentence-by-sentence TTS → μ-law frames).
Inbound audio is decoded (μ-law 8 kHz → PCM16 → 16 kHz), run through Silero VAD and the
endpointer; the pure :class:`~gateway.conversation.turns.TurnMachine` decides what a speech start or end means.
The call's record lives in memory and is mirrored to Redis (:mod:`gateway.conversation.record`). Hang-up
(``stop``, a closed socket, the agent hanging up, the max duration, SIGTERM) stops every task
within ``GATEWAY_TASK_CLOSE_TIMEOUT_S``, closes the record and hands the call to the hooks
(database row, ``call.completed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import WebSocket, WebSocketDisconnect

from gateway.agents.profile import AgentProfile, CallHooks, CallSummary
from gateway.config import GatewaySettings
from gateway.conversation.actions import CallControl
from gateway.conversation.endpointing import Endpointer, PauseDetected, SpeechEnded, SpeechStarted
from gateway.conversation.interruptions import is_backchannel
from gateway.conversation.llm_tools import ToolCall, openai_tools
from gateway.conversation.record import CallRecord, RecordWriter
from gateway.conversation.recording import CallRecorder
from gateway.conversation.smart_turn import SmartTurn
from gateway.conversation.speaker import Reply, Speaker
from gateway.conversation.store import CallStore
from gateway.conversation.tasks import TaskScope
from gateway.conversation.turns import Action, Event, State, TurnMachine
from gateway.conversation.vad import FRAME_MS as VAD_FRAME_MS
from gateway.conversation.vad import SAMPLE_RATE_HZ as VAD_RATE_HZ
from gateway.conversation.vad import SileroVAD
from gateway.metrics import (
    ABANDONED_TASKS,
    ACTIVE_CALLS,
    BARGE_INS,
    CALLS,
    ERRORS,
    MALFORMED,
    OVERSIZED,
    STAGE_LATENCY,
    STREAMS_REFUSED,
)
from gateway.telephony.playback import Playback
from gateway.telephony.rest import TwilioCalls
from gateway.telephony.signature import TOKEN_PARAMETER, StreamTokens
from gateway.upstream.llm import LLMClient
from gateway.upstream.speech import STTClient, TTSClient
from shared import twilio_media as tw
from shared.audio import TELEPHONY_RATE_HZ, Resampler, ulaw_decode, wav_bytes
from shared.errors import UpstreamError

log = logging.getLogger(__name__)

APOLOGY = "Sorry, I'm having trouble hearing you right now. Could you say that again?"


@dataclass
class Deps:
    """Process-wide objects a call uses (built once in the app's lifespan)."""

    settings: GatewaySettings
    store: CallStore
    stt: STTClient
    tts: TTSClient
    llm: LLMClient
    vad: SileroVAD
    hooks: CallHooks
    smart_turn: SmartTurn | None = None
    twilio: TwilioCalls | None = None
    stream_tokens: StreamTokens | None = None
    """Checks the per-call token of each stream (``None``: no Twilio auth token, no check)."""
    gateway_id: str = ""
    """This process's id, written on each live call (the orphan sweeper reads it)."""
    live_calls: set[str] = field(default_factory=set)
    """CallSids this process serves now."""


class CallSession(CallControl):
    """Runs one call until hang-up. Create per WebSocket; call :meth:`run`."""

    def __init__(self, deps: Deps, ws: WebSocket) -> None:
        self.deps = deps
        self.s = deps.settings
        self.ws = ws
        self.machine = TurnMachine()
        self.stream_sid = ""
        self.call_sid = ""
        self.from_ = ""
        self.to = ""
        self.started_at = 0.0
        self.history: list[dict[str, str]] = []
        self.scope = TaskScope("call", on_error=self._task_failed)
        self._ended = asyncio.Event()
        """Set when the call must end (receive loop over, hang-up, a task's bug)."""
        self._close_code = 1000
        self.end_status = "completed"
        self.writer: RecordWriter | None = None
        self._oversized = 0
        self._reply_task: asyncio.Task[None] | None = None
        self._replies: dict[str, Reply] = {}
        self._current_reply: Reply | None = None
        self._carry_text = ""
        self._after_reply: dict[str, Callable[[], Awaitable[None]]] = {}
        """Reply id → what to do once its last mark is echoed (hang up, transfer)."""
        self._carry_audio: np.ndarray | None = None
        """Caller audio whose transcription was cancelled because the caller went on talking."""
        self._turn_seq = 0
        self._resampler = Resampler(TELEPHONY_RATE_HZ, VAD_RATE_HZ)
        self._vad = deps.vad.stream()
        smart = deps.smart_turn is not None and self.s.turn_detection == "smart_turn"
        self._endpointer = Endpointer(
            threshold=self.s.vad_threshold,
            silence_ms=self.s.smart_turn_max_silence_ms if smart else self.s.endpoint_silence_ms,
            min_speech_ms=self.s.min_speech_ms,
            pre_roll_ms=self.s.pre_roll_ms,
            frame_ms=VAD_FRAME_MS,
            check_ms=self.s.smart_turn_pause_ms if smart else None,
        )
        self.playback: Playback | None = None
        self.speaker: Speaker | None = None
        self.recorder: CallRecorder | None = CallRecorder() if self.s.recording_enabled else None
        """Both sides of the call (caller frames as received, agent frames as sent)."""
        self._t0 = time.monotonic()
        self._barging = False
        self._last_activity = time.monotonic()
        self._reprompted = False
        self._owed_answer = False
        """The caller's last turn got no answer because an upstream failed."""
        self.profile: AgentProfile | None = None

    # ---- lifecycle -------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the call until ``stop``, disconnect, hang-up or the max call duration; then finish it.

        Always returns (within the close bounds), whatever a task or a library does with a cancel.
        """
        receive = self.scope.spawn(self._receive_loop(), "receive")
        receive.add_done_callback(lambda _task: self._ended.set())
        try:
            try:
                async with asyncio.timeout(self.s.max_call_seconds):
                    await self._ended.wait()
            except TimeoutError:
                log.warning("call %s reached the %ss limit", self.call_sid, self.s.max_call_seconds)
        finally:
            abandoned = await self.scope.aclose(self.s.task_close_timeout_s)
            if abandoned:
                ABANDONED_TASKS.inc(len(abandoned))
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self.ws.close(code=self._close_code)
            await self._finish()

    def _task_failed(self, task: asyncio.Task[Any], exc: BaseException) -> None:
        """A bug in one task ends the call (as a TaskGroup would), never the gateway."""
        ERRORS.labels("session").inc()
        log.error("call %s ended by an error in %s: %r", self.call_sid, task.get_name(), exc, exc_info=exc)
        self._ended.set()

    def end_call(self) -> None:
        """Ask the call to end now (the agent hangs up); :meth:`run` closes everything."""
        self._ended.set()

    def _append_turn(self, turn: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.append_turn(turn)

    def _append_action(self, action: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.append_action(action)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        return self.scope.spawn(coro, name)

    async def _send(self, command: tw.Command) -> None:
        await self.ws.send_text(tw.serialize_command(command))
        if self.recorder is not None:
            if isinstance(command, tw.SendMedia):
                self.recorder.add_outbound(command.payload, time.monotonic() - self._t0)
            elif isinstance(command, tw.Clear):
                self.recorder.truncate_outbound(time.monotonic() - self._t0)

    async def _receive_loop(self) -> None:
        while True:
            try:
                msg = await self.ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if msg["type"] == "websocket.disconnect":
                return
            raw = msg.get("text")
            data = raw if raw is not None else msg.get("bytes") or b""
            if len(data) > self.s.max_message_chars:  # skipped unparsed: never decode a flood
                self._skip_oversized("message", len(data))
                continue
            event = tw.parse_event(data)
            if event is None:
                MALFORMED.inc()
                continue
            if isinstance(event, tw.Media) and len(event.payload) > self.s.max_media_payload_bytes:
                self._skip_oversized("payload", len(event.payload))
                continue
            if isinstance(event, tw.Stop):
                log.info("call %s: stop", self.call_sid)
                return
            try:
                await self._handle(event)
            except Exception:  # one bad frame never ends the call
                ERRORS.labels("session").inc()
                log.exception("call %s: failed to handle %s", self.call_sid, type(event).__name__)

    def _skip_oversized(self, kind: str, size: int) -> None:
        OVERSIZED.labels(kind).inc()
        self._oversized += 1
        level = logging.WARNING if self._oversized == 1 else logging.DEBUG
        log.log(level, "call %s: skipped an oversized %s (%d; %d so far)", self.call_sid, kind, size, self._oversized)

    async def _handle(self, event: tw.Event) -> None:
        if isinstance(event, tw.Start):
            await self._on_start(event)
            return
        if isinstance(event, tw.Connected):
            return
        if not self.stream_sid or getattr(event, "stream_sid", None) != self.stream_sid:
            MALFORMED.inc()
            log.warning(
                "call %s: skipped %s for stream %r",
                self.call_sid,
                type(event).__name__,
                getattr(event, "stream_sid", None),
            )
            return
        if isinstance(event, tw.Media):
            self._on_audio(event.payload)
        elif isinstance(event, tw.MarkEcho):
            self._on_mark(event.name)
        elif isinstance(event, tw.Dtmf):
            await self._on_text_event(f"(The caller pressed {event.digit} on the keypad.)")

    async def _refuse(self, call_sid: str, reason: str) -> None:
        STREAMS_REFUSED.labels(reason).inc()
        log.warning("stream for call %r refused: %s", call_sid, reason)
        self._close_code = 1008  # policy violation
        self._ended.set()

    async def _admit(self, event: tw.Start) -> bool:
        """Is this stream the one the voice webhook answered for its CallSid (see gateway.telephony.signature)?"""
        sid = event.call_sid
        if self.deps.stream_tokens is not None:
            reason = self.deps.stream_tokens.verify(sid, event.custom_parameters.get(TOKEN_PARAMETER))
            if reason is not None:
                await self._refuse(sid, f"token {reason}")
                return False
        if sid in self.deps.live_calls:
            await self._refuse(sid, "second stream")
            return False
        try:
            async with asyncio.timeout(self.s.redis_socket_timeout_s):
                holder = await self.deps.store.claim_stream(sid, event.stream_sid, self._claim_ttl_s)
        except Exception as exc:  # Redis down: the call is served; only this process's rule holds
            log.warning("call %s: could not claim the stream in Redis (%r)", sid, exc)
            holder = None
        if holder is not None:
            await self._refuse(sid, "second stream")
            return False
        return True

    @property
    def _claim_ttl_s(self) -> int:
        return int(self.s.max_call_seconds + self.s.stream_token_ttl_s + 60)

    async def _on_start(self, event: tw.Start) -> None:
        if self.stream_sid or self._close_code != 1000:
            log.warning("call %s: ignored a second start", self.call_sid)
            return
        if not await self._admit(event):
            return
        self.stream_sid, self.call_sid = event.stream_sid, event.call_sid
        self.scope.label = self.call_sid
        self.deps.live_calls.add(self.call_sid)
        params = event.custom_parameters
        self.from_ = params.get("From", params.get("from", ""))
        self.to = params.get("To", params.get("to", ""))
        self.started_at = time.time()
        self._t0 = time.monotonic()
        CALLS.inc()
        ACTIVE_CALLS.inc()
        log.info("call %s started (stream %s, from %s to %s)", self.call_sid, self.stream_sid, self.from_, self.to)
        record = CallRecord(self.call_sid, self.stream_sid, self.from_, self.to, self.started_at, self.deps.gateway_id)
        self.writer = RecordWriter(self.deps.store, record)
        self.writer.start()
        self.playback = Playback(self._send, self.stream_sid, self.s.playback_lead_ms, self._on_reply_started)
        self._spawn(self.playback.run(), "playback")
        self.speaker = Speaker(self.deps.tts, self.playback)
        self.profile = await self.deps.hooks.profile_for(self.call_sid, self.from_, self.to)
        self._reply_task = self._spawn(self._greet(), "greeting")
        self._spawn(self._silence_watchdog(), "silence")

    async def _finish(self) -> None:
        """Close the record (bounded Redis flush) and hand the call to the hooks (bounded)."""
        if not self.call_sid or self.writer is None:
            return
        ACTIVE_CALLS.dec()
        self.deps.live_calls.discard(self.call_sid)
        ended_at = time.time()
        for reply in self._replies.values():
            self._record_reply(reply, status="hangup")
        self.writer.end(ended_at, self.end_status)
        await self.writer.close(self.s.redis_flush_timeout_s)
        turns = list(self.writer.record.turns)  # the call's own record: complete even if Redis is not
        if self.profile is None:  # the hooks failed before the call was served
            log.info("call %s finished after %.1fs without a profile", self.call_sid, ended_at - self.started_at)
            return
        summary = CallSummary(
            call_sid=self.call_sid,
            stream_sid=self.stream_sid,
            from_=self.from_,
            to=self.to,
            started_at=self.started_at,
            ended_at=ended_at,
            turns=turns,
            profile=self.profile,
            status=self.end_status,
            recording_pcm16=await asyncio.to_thread(self.recorder.mix) if self.recorder is not None else None,
        )
        try:
            async with asyncio.timeout(self.s.finish_timeout_s):
                await self.deps.hooks.call_ended(summary)
        except Exception:
            ERRORS.labels("session").inc()
            log.exception("call %s: call_ended hook failed", self.call_sid)
        log.info("call %s finished after %.1fs", self.call_sid, ended_at - self.started_at)

    # ---- inbound audio and turn-taking ----------------------------------------------
    def _on_audio(self, ulaw: bytes) -> None:
        if self.recorder is not None:
            self.recorder.add_inbound(ulaw, time.monotonic() - self._t0)
        pcm16k = self._resampler.process(ulaw_decode(ulaw))
        ep = self._endpointer
        for frame, prob in self._vad.process(pcm16k):
            for ev in ep.push(frame, prob):
                if isinstance(ev, SpeechStarted):
                    self._on_speech_started()
                elif isinstance(ev, PauseDetected):
                    self._spawn(self._check_turn(ev), "smart-turn")
                elif isinstance(ev, SpeechEnded):
                    self._on_speech_ended(ev)
            if (
                self.machine.state is State.SPEAKING
                and ep.in_speech
                and ep.voiced_ms >= self.s.barge_in_min_ms
                and not self._barging
            ):
                self._barging = True
                self._handle_speech_started()

    def _on_speech_started(self) -> None:
        self._last_activity = time.monotonic()
        self._reprompted = False  # (an owed answer stays owed until one is given: noise answers nothing)
        if self.machine.state is State.SPEAKING:
            return  # over the agent: only GATEWAY_BARGE_IN_MIN_MS of speech (or words) interrupts
        self._handle_speech_started()

    def _handle_speech_started(self) -> None:
        before = self.machine.state
        action = self.machine.handle(Event.SPEECH_STARTED)
        log.info(
            "call %s: caller speech (%s → %s, %s)", self.call_sid, before.value, self.machine.state.value, action.value
        )
        self._persist_state()
        if action is Action.BARGE_IN:
            BARGE_INS.inc()
            self._spawn(self._barge_in(self._endpointer.now_ms), "barge-in")
        elif action is Action.CANCEL_REPLY:
            self._cancel_reply()

    def _on_speech_ended(self, utt: SpeechEnded) -> None:
        self._last_activity = time.monotonic()
        self._barging = False
        if self.machine.state is State.SPEAKING:
            # Short speech over the agent: a backchannel unless its words say otherwise.
            self._spawn(self._check_interjection(utt), "interjection")
            return
        action = self.machine.handle(Event.SPEECH_ENDED)
        self._persist_state()
        if action is Action.TRANSCRIBE:
            self._cancel_reply()
            # Taken now, not inside the task: a reply cancelled before it ever ran (the caller
            # went on talking while the gateway was behind) must still carry this audio.
            audio = utt.audio if self._carry_audio is None else np.concatenate([self._carry_audio, utt.audio])
            self._carry_audio = audio
            self._reply_task = self._spawn(self._respond(utt, audio, time.monotonic()), "reply")

    async def _check_turn(self, pause: PauseDetected) -> None:
        """Smart Turn on the utterance so far; end the turn now if the caller sounds done."""
        assert self.deps.smart_turn is not None
        if self.machine.state is State.SPEAKING:
            return  # speech over the agent is judged by the barge-in rules, not end-of-turn
        t0 = time.monotonic()
        probability = await asyncio.to_thread(self.deps.smart_turn.probability, pause.audio)
        ep = self._endpointer
        log.debug("call %s: smart turn %.2f in %.0f ms", self.call_sid, probability, (time.monotonic() - t0) * 1000)
        if probability >= self.s.smart_turn_threshold and ep.in_speech and ep.pause_id == pause.pause_id:
            ended = ep.commit()
            if ended is not None:
                self._on_speech_ended(ended)

    async def _check_interjection(self, utt: SpeechEnded) -> None:
        try:
            text = await self.deps.stt.transcribe(utt.audio, VAD_RATE_HZ)
        except UpstreamError as exc:
            ERRORS.labels("stt").inc()
            log.warning("call %s: could not transcribe speech over the agent: %s", self.call_sid, exc)
            return
        if is_backchannel(text, self.s.backchannels, self.s.barge_in_min_words):
            log.info("call %s: backchannel %r did not interrupt", self.call_sid, text)
            now = time.time()
            turn = {"role": "user", "text": text, "backchannel": True, "started_at": now, "ended_at": now}
            self._append_turn(turn)
            return
        if self.machine.state is State.SPEAKING:
            self._handle_speech_started()  # barge-in: clear, cancel, trim
        if self.machine.handle(Event.SPEECH_ENDED) is Action.TRANSCRIBE:
            self._persist_state()
            self._cancel_reply()
            now = time.time()
            user_turn = {"role": "user", "text": text, "raw_text": text, "started_at": now, "ended_at": now}
            corrected = self._profile.corrections.apply(text)
            self._reply_task = self._spawn(self._respond_text(corrected, {}, user_turn=user_turn), "reply")

    async def _on_text_event(self, text: str) -> None:
        """A non-speech caller input (DTMF) answered like an utterance."""
        self._last_activity = time.monotonic()
        if self.machine.state is State.SPEAKING:
            self._handle_speech_started()
        self.machine.handle(Event.SPEECH_ENDED)
        self._persist_state()
        self._cancel_reply()
        self._reply_task = self._spawn(self._respond_text(text, {}), "reply")

    def _on_mark(self, name: str) -> None:
        reply = self._replies.get(name.rsplit(":", 1)[0])
        if reply is None:
            return
        reply.acked.add(name)
        if name == reply.end_mark:
            self._last_activity = time.monotonic()
            self.machine.handle(Event.REPLY_FINISHED)
            self._persist_state()
            self._record_reply(reply, status="completed")
            if (after := self._after_reply.pop(reply.reply_id, None)) is not None:
                self._spawn(after(), "after-reply")

    def _on_reply_started(self, reply_id: str) -> None:
        if reply_id.startswith("reply-"):  # the caller is being answered: no longer owed one
            self._owed_answer = False
        reply = self._replies.get(reply_id)
        if reply is not None and reply is self._current_reply:
            self.machine.handle(Event.REPLY_AUDIO_STARTED)
            self._persist_state()

    @property
    def _profile(self) -> AgentProfile:
        assert self.profile is not None, "profile is set when the stream starts"
        return self.profile

    def _persist_state(self) -> None:
        if self.writer is not None:
            self.writer.set_state(self.machine.state.value)

    def _cancel_reply(self) -> None:
        if self._reply_task is not None and not self._reply_task.done():
            self._reply_task.cancel()
        self._reply_task = None

    async def _barge_in(self, at_ms: int) -> None:
        """Caller spoke over the agent: clear Twilio's buffer, stop LLM/TTS, keep only heard words.

        ``at_ms``: stream time (ms of caller audio since the call started) when the barge-in rule fired.
        The cancelled reply is given a moment (bounded) to commit its exchange, so the caller's turn
        is recorded before the interrupted answer to it, never after.
        """
        task = self._reply_task
        self._cancel_reply()
        if self.playback is not None:
            await self.playback.clear()
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=1.0)
        reply = self._current_reply
        if reply is not None:
            self._record_reply(reply, status="interrupted", barge_in_stream_ms=at_ms)

    # ---- replies --------------------------------------------------------------------
    async def _greet(self) -> None:
        profile = self._profile
        reply = await self._say("greeting", profile.reject_message or profile.greeting)
        if profile.reject_message:
            self._after_reply[reply.reply_id] = self._hang_up
        if reply.sentences:  # the LLM must know what the caller has already heard
            reply.history_msg = {"role": "assistant", "content": reply.text()}
            self.history.append(reply.history_msg)

    def _new_reply(self, kind: str) -> Reply:
        self._turn_seq += 1
        reply = Reply(reply_id=f"{kind}-{self._turn_seq}")
        self._replies[reply.reply_id] = reply
        self._current_reply = reply
        return reply

    async def _respond(self, utt: SpeechEnded, audio: np.ndarray, detected_at: float) -> None:
        """Reply to one utterance; errors become a spoken apology, never a dropped call.

        ``audio`` is ``utt.audio`` preceded by any earlier part whose reply was cancelled because
        the caller paused and went on talking (PCM16 16 kHz); both parts are transcribed together.
        """
        latency: dict[str, float] = {"endpointing_ms": float(utt.detected_ms - utt.end_ms)}
        speech_end = detected_at - latency["endpointing_ms"] / 1000
        if self.s.debug_audio_dir:
            self._dump_utterance(audio)
        t0 = time.monotonic()
        try:
            heard = await self.deps.stt.transcribe(audio, VAD_RATE_HZ)
        except UpstreamError as exc:
            self._carry_audio = None
            ERRORS.labels("stt").inc()
            log.error("call %s: STT failed: %s", self.call_sid, exc)
            now = time.time()
            self._unanswered({"role": "user", "text": "", "started_at": now, "ended_at": now}, "stt")
            await self._apologise()
            return
        self._carry_audio = None
        latency["stt_ms"] = (time.monotonic() - t0) * 1000
        log.info(
            "call %s: heard %r (%.1fs of audio, STT %.0f ms)",
            self.call_sid,
            heard,
            audio.size / VAD_RATE_HZ,
            latency["stt_ms"],
        )
        text = f"{self._carry_text} {heard}".strip()
        if not text:
            self.machine.handle(Event.REPLY_ABANDONED)
            self._persist_state()
            return
        self._carry_text = text  # kept if the caller goes on talking before we answer
        corrected = self._profile.corrections.apply(text)
        ended_at = time.time() - (time.monotonic() - speech_end)  # the caller stopped talking, Unix time
        user_turn = {
            "role": "user",
            "text": corrected,
            "raw_text": text,
            "started_at": ended_at - (utt.end_ms - utt.start_ms) / 1000,
            "ended_at": ended_at,
            "audio_ms": audio.size * 1000 // VAD_RATE_HZ,
        }
        await self._respond_text(corrected, latency, speech_end=speech_end, user_turn=user_turn)

    def _dump_utterance(self, audio: np.ndarray) -> None:
        folder = Path(str(self.s.debug_audio_dir))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{self.call_sid}-{self._turn_seq}.wav").write_bytes(wav_bytes(audio, VAD_RATE_HZ))

    async def _respond_text(
        self,
        text: str,
        latency: dict[str, float],
        speech_end: float | None = None,
        user_turn: dict[str, Any] | None = None,
    ) -> None:
        reply = self._new_reply("reply")
        reply.latency_ms.update(latency)
        messages = [{"role": "system", "content": self._profile.system_prompt}]
        messages += self.history[-self.s.max_history_turns :]
        messages.append({"role": "user", "content": text})
        if user_turn is None:
            now = time.time()
            user_turn = {"role": "user", "text": text, "started_at": now, "ended_at": now}
        calls: list[ToolCall] = []
        tools = openai_tools(self.s.tools) or None

        async def spoken() -> AsyncIterator[str]:
            async for item in self.deps.llm.stream(messages, tools):
                if isinstance(item, ToolCall):
                    calls.append(item)
                else:
                    yield item

        try:
            await self._speak(reply, spoken(), llm_started=time.monotonic())
        except UpstreamError as exc:
            ERRORS.labels(exc.service).inc()
            log.error("call %s: reply failed: %s", self.call_sid, exc)
            if not reply.sentences and not calls:
                self._unanswered(user_turn, exc.service)
                await self._apologise()
                return
        finally:
            if reply.sentences or calls:  # an answer is (being) given: the exchange enters the history
                self._commit_exchange(text, user_turn, reply)
        if calls:
            await self._run_tools(calls, reply)
        if speech_end is not None and self.playback is not None and reply.sentences:
            await self.playback.first_frame_event(reply.reply_id).wait()
            reply.latency_ms["voice_to_voice_ms"] = (self.playback.first_sent[reply.reply_id] - speech_end) * 1000
        for key, value in reply.latency_ms.items():
            STAGE_LATENCY.labels(key.removesuffix("_ms")).observe(value / 1000)

    def _commit_exchange(self, text: str, user_turn: dict[str, Any], reply: Reply) -> None:
        self._carry_text = ""
        reply.history_msg = {"role": "assistant", "content": reply.heard_text() if reply.interrupted else reply.text()}
        self.history += [{"role": "user", "content": text}, reply.history_msg]
        self._append_turn(user_turn)

    def _unanswered(self, user_turn: dict[str, Any], service: str) -> None:
        """The caller spoke but got no answer (``service`` failed): keep the turn, marked, on its own.

        Its text is not carried into the caller's next turn, and the silence watchdog counts from
        now: a failed reply is not caller silence.
        """
        self._carry_text = ""
        self._last_activity = time.monotonic()
        self._reprompted = False
        self._owed_answer = True
        self._append_turn({**user_turn, "unanswered": True, "failed": service})

    async def _apologise(self) -> None:
        await self._say("apology", APOLOGY)

    async def _speak(self, reply: Reply, deltas: AsyncIterator[str], llm_started: float | None = None) -> None:
        """Speak a text stream (see :meth:`Speaker.speak`); a reply with no sentence is abandoned.

        Raises:
            UpstreamError: the LLM or TTS failed.
        """
        assert self.speaker is not None
        try:
            await self.speaker.speak(reply, deltas, self._profile.voice, llm_started)
        finally:
            if not reply.sentences:
                self.machine.handle(Event.REPLY_ABANDONED)
                self._persist_state()

    async def _say(self, kind: str, text: str) -> Reply:
        """Speak a fixed text as its own reply (greeting, apology, re-prompt, goodbye)."""
        reply = self._new_reply(kind)

        async def once() -> AsyncIterator[str]:
            yield text

        try:
            await self._speak(reply, once())
        except UpstreamError as exc:
            ERRORS.labels(exc.service).inc()
            log.error("call %s: could not say the %s: %s", self.call_sid, kind, exc)
        return reply

    def _record_reply(self, reply: Reply, status: str, barge_in_stream_ms: int | None = None) -> None:
        """Queue the agent's turn for Redis once; if interrupted, only the words heard."""
        if reply.recorded or not reply.sentences:
            return
        reply.recorded = True
        reply.interrupted = status != "completed" and reply.end_mark not in reply.acked
        text = reply.heard_text() if reply.interrupted else reply.text()
        if reply.history_msg is not None:
            reply.history_msg["content"] = text
        turn = {
            "role": "assistant",
            "reply_id": reply.reply_id,
            "text": text,
            "full_text": reply.text(),
            "interrupted": reply.interrupted,
            "status": status,
            "started_at": reply.started_at,
            "ended_at": time.time(),
            "latency_ms": {k: round(v, 1) for k, v in reply.latency_ms.items()},
        }
        if barge_in_stream_ms is not None:
            turn["barge_in_stream_ms"] = barge_in_stream_ms  # where in the caller's audio it fired
        self._append_turn(turn)
