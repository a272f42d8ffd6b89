"""One live call over any carrier: the receive loop, turn-taking and the call's end.

:class:`CallSession` reads :mod:`~gateway.conversation.transport` events from its transport
(Twilio Media Streams today), hands caller audio to its :class:`~gateway.conversation.listening.Listener`
and decides, with the pure :class:`~gateway.conversation.turns.TurnMachine`, what a speech start,
a speech end or a barge-in means; the :class:`~gateway.conversation.responder.Responder` makes
the replies and :class:`~gateway.conversation.actions.CallActions` the hang-ups, transfers and
re-prompts. It owns every task of the call in a :class:`~gateway.conversation.tasks.TaskScope`
(bounded close, even when a library swallows a cancel). The call's record lives in memory and is
mirrored to the live store (:mod:`gateway.conversation.record`). Hang-up (the caller leaves, the
agent hangs up, the max duration, SIGTERM) stops every task within ``GATEWAY_CALL__TASK_CLOSE_TIMEOUT_S``,
closes the record and hands the call to the hooks (:mod:`gateway.conversation.ending`). A stream lost
without the carrier's ``stop`` may be resumed by another session, here or on another gateway
(:mod:`gateway.conversation.resume`): this one then lets the call go unfinished, and a resumed session
starts from the stored record.

It knows no carrier, web framework or database: everything it touches comes in
:class:`~gateway.conversation.deps.Deps` (Protocols) and the :class:`Transport`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

import numpy as np

from gateway.agents.profile import AgentProfile
from gateway.conversation.actions import CallActions
from gateway.conversation.admission import refusal
from gateway.conversation.context import Attention, now
from gateway.conversation.deps import Deps
from gateway.conversation.ending import close_call
from gateway.conversation.endpointing import PauseDetected, PauseStarted, SpeechEnded, SpeechResumed, SpeechStarted
from gateway.conversation.language import CallLanguage
from gateway.conversation.listening import BargeIn, FalseOnset, Listener, SpeechOnset
from gateway.conversation.overlap import Overlap
from gateway.conversation.record import CallRecord, RecordWriter
from gateway.conversation.recording import CallRecorder
from gateway.conversation.replies import Reply
from gateway.conversation.responder import Responder
from gateway.conversation.resume import ResumedCall, load_resumed, resume_line
from gateway.conversation.speaker import Speaker
from gateway.conversation.tasks import TaskScope
from gateway.conversation.transcript import Transcript
from gateway.conversation.transport import (
    AudioIn,
    CallerLeft,
    CallStarted,
    ConversationEvent,
    DigitPressed,
    MarkPlayed,
    TextIn,
    Transport,
    TransportEvent,
    TurnRecorded,
)
from gateway.conversation.turns import Action, Event, State, TurnMachine
from gateway.metrics import ACTIVE_CALLS, BARGE_INS, CALLS, ERRORS, RESUMES, STREAMS_REFUSED
from shared.audio import ulaw_decode

log = logging.getLogger(__name__)

BARGE_IN_WAIT_S = 1.0
"""How long a barge-in waits for the interrupted reply's task to commit its exchange."""


class CallSession:
    """Runs one call until it ends. Create one per caller connection; call :meth:`run`.

    Args:
        deps: the process's collaborators (real clients, or the fakes of ``tests/fakes``).
        transport: the caller's connection (:class:`~gateway.conversation.transport.Transport`).
    """

    def __init__(self, deps: Deps, transport: Transport) -> None:
        self.deps = deps
        self.s = deps.settings
        self.transport = transport
        self.machine = TurnMachine()
        self.attention = Attention()
        self.call_sid = ""
        self.stream_sid = ""
        self.from_ = ""
        self.to = ""
        self.started_at = 0.0
        self.end_status = "completed"
        self.scope = TaskScope("call", on_error=self._task_failed)
        self.writer: RecordWriter | None = None
        self.transcript = Transcript(self._append_turn, self.s.agent.max_history_turns)
        rates = {"inbound_rate_hz": transport.input_rate_hz, "outbound_rate_hz": transport.output_format.sample_rate_hz}
        self.recorder: CallRecorder | None = CallRecorder(**rates) if self.s.recording.enabled else None
        """Both sides of the call on one timeline (PCM16 8 kHz, whatever the carrier's rates)."""
        smart = deps.smart_turn is not None and self.s.listening.turn_detection == "smart_turn"
        self.listener = Listener(
            self.s,
            deps.vad.stream(),
            transport.input_rate_hz,
            agent_speaking=lambda: self.machine.state is State.SPEAKING,
            turn_detector=deps.smart_turn if smart else None,
            echo_gate=not transport.echo_cancelled,
        )
        self.language = CallLanguage()
        """The call's language (the agent's setting, or detected: :mod:`gateway.conversation.language`)."""
        self.overlap = Overlap(self)
        """Caller speech over the agent: pause, then interrupt or resume."""
        self._profile: AgentProfile | None = None
        self.speaker: Speaker | None = None
        self.responder: Responder | None = None
        self.actions: CallActions | None = None
        self._ended = asyncio.Event()
        """Set when the call must end (receive loop over, hang-up, a task's bug)."""
        self.close_code = 1000
        """WebSocket close code of the transport (1008: the stream was refused)."""
        self._t0 = 0.0
        """Loop time of the call's start (the recording's zero)."""
        self.resumed: ResumedCall | None = None
        """The call's earlier record when this stream resumes it (another stream served it first)."""
        self.stream_lost = False
        """The connection closed without the carrier's ``stop``: the call may go on elsewhere."""

    # ---- CallContext and EndingHost ------------------------------------------------------------
    @property
    def answering(self) -> AgentProfile | None:
        """The agent answering, or ``None`` before the call's profile is known."""
        return self._profile

    def replies(self) -> list[Reply]:
        """Every reply the responder still knows (none before it exists)."""
        return list(self.responder.replies.values()) if self.responder is not None else []

    @property
    def profile(self) -> AgentProfile:
        """The agent answering (set when the call starts)."""
        assert self._profile is not None, "the profile is set when the call starts"
        return self._profile

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as one of the call's tasks."""
        return self.scope.spawn(coro, name)

    def persist_state(self) -> None:
        """Mirror the turn state to the live record."""
        if self.writer is not None:
            self.writer.set_state(self.machine.state.value)

    def record_action(self, action: dict[str, Any]) -> None:
        """Store one tool action."""
        if self.writer is not None:
            self.writer.append_action(action)

    def _append_turn(self, turn: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.append_turn(turn)
        self.emit(TurnRecorded(turn))

    def emit(self, event: ConversationEvent) -> None:
        """Show a conversation event on the caller's side (a carrier without a screen ignores it)."""
        self.transport.emit(event)

    def agent_busy(self) -> bool:
        """A reply is being made, or audio is still queued for the caller."""
        return (self.responder is not None and self.responder.busy()) or self.transport.pending > 0

    def caller_speaking(self) -> bool:
        """The caller is in the middle of an utterance."""
        return self.listener.in_speech

    def end_call(self) -> None:
        """Ask the call to end now (the agent hangs up); :meth:`run` closes everything."""
        self._ended.set()

    # ---- lifecycle -------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the call until the caller leaves, a hang-up or the max call duration; then finish it.

        Always returns (within the close bounds), whatever a task or a library does with a cancel.
        """
        self.transport.bind(self)
        receive = self.scope.spawn(self._receive_loop(), "receive")
        receive.add_done_callback(lambda _task: self._ended.set())
        try:
            try:
                async with asyncio.timeout(self.s.call.max_call_seconds):
                    await self._ended.wait()
            except TimeoutError:
                log.warning("call %s reached the %ss limit", self.call_sid, self.s.call.max_call_seconds)
        finally:
            await close_call(self)

    def _task_failed(self, task: asyncio.Task[Any], exc: BaseException) -> None:
        """A bug in one task ends the call (as a TaskGroup would), never the gateway."""
        ERRORS.labels("session").inc()
        log.error("call %s ended by an error in %s: %r", self.call_sid, task.get_name(), exc, exc_info=exc)
        self._ended.set()

    async def _receive_loop(self) -> None:
        while True:
            event = await self.transport.receive()
            if event is None and not self._ended.is_set():
                self.stream_lost = True
                log.info("call %s: the stream closed without a stop", self.call_sid)
                return
            if event is None or isinstance(event, CallerLeft):
                log.info("call %s: the caller left", self.call_sid)
                return
            try:
                await self._handle(event)
            except Exception:  # one bad event never ends the call
                ERRORS.labels("session").inc()
                log.exception("call %s: failed to handle %s", self.call_sid, type(event).__name__)

    async def _handle(self, event: TransportEvent) -> None:
        if isinstance(event, CallStarted):
            await self._on_start(event)
        elif self.responder is None:
            return  # before the call is served (or after it was refused)
        elif isinstance(event, AudioIn):
            await self._on_audio(event)
        elif isinstance(event, MarkPlayed):
            self._on_mark(event.name)
        elif isinstance(event, DigitPressed):
            await self.on_text_event(f"(The caller pressed {event.digit} on the keypad.)")
        elif isinstance(event, TextIn):
            await self.on_text_event(event.text)

    async def _on_start(self, event: CallStarted) -> None:
        if self.call_sid or self.close_code != 1000:
            log.warning("call %s: ignored a second start", self.call_sid)
            return
        reason = await refusal(self.deps, event)
        if reason is not None:
            STREAMS_REFUSED.labels(reason).inc()
            log.warning("stream for call %r refused: %s", event.call_id, reason)
            self.close_code = 1008  # policy violation
            self._ended.set()
            return
        self.call_sid, self.stream_sid = event.call_id, event.stream_id
        self.from_, self.to = event.from_, event.to
        self.scope.label = self.call_sid
        self.resumed = resumed = await load_resumed(self.deps, event)
        self.deps.live_calls.add(self.call_sid)
        self.started_at, self._t0 = resumed.started_at if resumed else time.time(), now()
        self.attention.touch()
        (RESUMES if resumed else CALLS).inc()
        ACTIVE_CALLS.inc()
        how = f"resumed from {resumed.previous_gateway!r}" if resumed else "started"
        log.info("call %s %s (stream %s, from %s to %s)", self.call_sid, how, self.stream_sid, self.from_, self.to)
        record = CallRecord(self.call_sid, self.stream_sid, self.from_, self.to, self.started_at, self.deps.gateway_id)
        if resumed is not None:  # the record goes on: its turns are in the store already
            record.turns, record.actions = list(resumed.turns), list(resumed.actions)
            self.transcript.restore(resumed.turns)
        self.writer = RecordWriter(self.deps.store, record)
        self.writer.start()
        self.spawn(self.transport.run_output(), "output")
        again = {"resumed": True} if resumed else {}
        self._profile = await self.deps.hooks.profile_for(self.call_sid, self.from_, self.to, **again)
        self.language = CallLanguage(self.profile.language)
        self.speaker = Speaker(self.deps.tts, self.transport, self.language.voice(self.profile.voice))
        self.responder = Responder(self, self.speaker, self._run_tools)
        self.actions = CallActions(self, self.responder.say)
        line = resume_line(self.s.agent, resumed.turns) if resumed else None
        self.responder.start(self._greet() if line is None else self._resume(line), "greeting")
        self.spawn(self.actions.silence_watchdog(), "silence")

    async def _greet(self) -> None:
        assert self.responder is not None and self.actions is not None
        reply = await self.responder.greet()
        if self.profile.reject_message:
            self.actions.after(reply, self.actions.hang_up)
        else:  # while the greeting plays
            self.responder.prewarm()

    async def _resume(self, line: str) -> None:
        """Open a resumed call: ``line`` ("Sorry, you cut out…") instead of the greeting."""
        assert self.responder is not None
        reply = await self.responder.say("resume", line)
        self.transcript.agent_said(reply)
        self.responder.prewarm()

    async def _run_tools(self, calls: Any, reply: Reply) -> None:
        assert self.actions is not None
        await self.actions.run_tools(calls, reply)

    # ---- PlayoutHooks (called by the transport) ----------------------------------------------
    def on_playout_started(self, reply_id: str, at: float) -> None:
        """The first frame of ``reply_id`` left for the caller at loop time ``at``."""
        reply = self.responder.replies.get(reply_id) if self.responder is not None else None
        if reply is None:
            return
        reply.frame_sent(at)
        if reply.kind == "reply":  # the caller is being answered: no longer owed one
            self.attention.owed_answer = False
        if self.responder is not None and reply is self.responder.current and not reply.interrupted:
            self.machine.handle(Event.REPLY_AUDIO_STARTED)
            self.persist_state()

    def on_frame_sent(self, audio: bytes, at: float) -> None:
        """One outbound frame (the transport's format) at loop time ``at``: into the recording."""
        pcm = ulaw_decode(audio) if self.transport.output_format.encoding == "pcmu" else np.frombuffer(audio, "<i2")
        self.listener.played(pcm, at)
        if self.recorder is not None:
            self.recorder.add_outbound(pcm, at - self._t0)

    def _on_mark(self, name: str) -> None:
        assert self.responder is not None
        reply = self.responder.replies.get(name.rsplit(":", 1)[0])
        if reply is None or reply.interrupted:
            return
        reply.mark_played(name)
        if name == reply.end_mark:
            self.attention.touch()
            self.machine.handle(Event.REPLY_FINISHED)
            self.persist_state()
            self.transcript.record_reply(reply, status="completed")

    # ---- listening and turn-taking -----------------------------------------------------------
    async def _on_audio(self, event: AudioIn) -> None:
        assert self.responder is not None
        if self.recorder is not None:
            self.recorder.add_inbound(event.pcm16, now() - self._t0)
        for ev in await self.listener.push(event.pcm16, now()):
            if isinstance(ev, SpeechStarted):
                self.attention.caller_spoke()
                if self.machine.state is not State.SPEAKING:  # over the agent, the barge-in rule decides
                    await self.caller_took_turn()
            elif isinstance(ev, SpeechOnset):
                self.overlap.onset()
            elif isinstance(ev, FalseOnset):
                self.overlap.resume("not speech")
            elif isinstance(ev, BargeIn):
                await self.caller_took_turn(ev.at_ms)
            elif isinstance(ev, PauseStarted | SpeechResumed):
                if isinstance(ev, PauseStarted) and self.overlap.paused:
                    self.overlap.judge(ev)  # words over the held agent: decide now
                elif isinstance(ev, SpeechResumed):
                    self.overlap.spoke_again()
                self.responder.on_pause(ev)  # early STT
            elif isinstance(ev, PauseDetected):
                if self.machine.state is not State.SPEAKING:
                    self.spawn(self.check_turn(ev), "smart-turn")
                else:
                    self.overlap.deferred(ev)
            elif isinstance(ev, SpeechEnded):
                self.on_speech_ended(ev)

    async def caller_took_turn(self, at_ms: int | None = None) -> None:
        """The caller has the floor: cancel a pending reply, or barge in on one that is playing."""
        action = self.machine.handle(Event.SPEECH_STARTED)
        self.persist_state()
        if action is Action.BARGE_IN:
            BARGE_INS.inc()
            await self._barge_in(self.listener.now_ms if at_ms is None else at_ms)
        elif action is Action.CANCEL_REPLY and self.responder is not None:
            self.responder.cancel()

    async def _barge_in(self, at_ms: int) -> None:
        """Stop the agent: control first (interrupt, cancel LLM and TTS), then clear the line.

        Only what the caller heard stays in the history and the record; the interrupted reply's
        task is given a moment (bounded) to commit its exchange, so the caller's turn is recorded
        before the answer it interrupted. ``at_ms``: stream time the rule fired.
        """
        assert self.responder is not None
        reply, task = self.responder.current, self.responder.task
        if reply is not None:
            reply.interrupt()
        self.responder.cancel()
        await self.transport.clear()
        self.overlap.interrupted()
        if self.recorder is not None:
            self.recorder.truncate_outbound(now() - self._t0)
        log.info("call %s: barge-in at %d ms", self.call_sid, at_ms)
        self.spawn(self._record_interrupted(reply, task, at_ms), "barge-in")

    async def _record_interrupted(self, reply: Reply | None, task: asyncio.Task[Any] | None, at_ms: int) -> None:
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=BARGE_IN_WAIT_S)
        if reply is not None:
            self.transcript.record_reply(reply, status="interrupted", barge_in_stream_ms=at_ms)

    def on_speech_ended(self, utt: SpeechEnded) -> None:
        """An utterance ended: answer it, or, over the agent, judge it by its words."""
        assert self.responder is not None
        self.attention.touch()
        if self.machine.state is State.SPEAKING:  # short speech over the agent: judged by its words
            if not self.overlap.deferred(utt):
                self.spawn(self.overlap.check_ended(utt), "interjection")
            return
        action = self.machine.handle(Event.SPEECH_ENDED)
        self.persist_state()
        if action is Action.TRANSCRIBE:
            self.responder.answer_utterance(utt, now())

    async def check_turn(self, pause: PauseDetected) -> None:
        """Ask Smart Turn about a pause; end the turn if the caller sounds done."""
        ended = await self.listener.check_turn(pause)
        if ended is not None and self.machine.state is not State.SPEAKING:
            self.on_speech_ended(ended)

    async def on_text_event(self, text: str) -> None:
        """Caller input that is not speech (DTMF, typed text), answered like an utterance."""
        assert self.responder is not None
        self.attention.caller_spoke()
        if self.machine.state is State.SPEAKING:
            await self.caller_took_turn()
        self.machine.handle(Event.SPEECH_ENDED)
        self.persist_state()
        self.responder.answer_text(text)
