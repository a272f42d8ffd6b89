"""Caller speech over the agent: pause at its onset, then interrupt, or resume where it stopped.

Without it the agent talks on until ``GATEWAY_LISTENING__BARGE_IN_MIN_MS`` (800 ms) of voiced
speech has been heard — ~1.3 s of talking over the caller. With it (``GATEWAY_LISTENING__BARGE_IN_PAUSE_MS``,
LiveKit Agents' ``resume_false_interruption``/``false_interruption_timeout``, ``voice/agent_activity.py``):

1. at the speech's onset (:class:`~gateway.conversation.listening.SpeechOnset`, 64 ms of voiced
   audio that is not the agent's own echo) the transport stops sending the reply's audio: the line
   falls silent once the carrier's small buffer has played;
2. the pause is **confirmed** as an interruption when the caller has talked ``barge_in_min_ms``
   (:class:`~gateway.conversation.listening.BargeIn`: the session clears and cancels) or when the
   words of a shorter utterance, transcribed as soon as the caller pauses (96 ms), are not a
   backchannel;
3. it is **resumed** — the reply goes on from the frame where it stopped — when the sound was too
   short to be speech (:class:`~gateway.conversation.listening.FalseOnset`), when the words are
   only backchannels ("mm-hm", "okay") or nothing (noise, a cough), or after
   ``false_interruption_timeout_ms`` without a decision. Fewer than ``barge_in_min_words`` other
   words ("Wait, sorry…") decide nothing yet: the caller may be going on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

from gateway.agents.profile import AgentProfile
from gateway.config import GatewaySettings
from gateway.conversation.context import now
from gateway.conversation.deps import Deps
from gateway.conversation.endpointing import PauseDetected, PauseStarted, SpeechEnded
from gateway.conversation.interruptions import is_backchannel, only_backchannels, words
from gateway.conversation.listening import Listener
from gateway.conversation.responder import Responder
from gateway.conversation.transcript import Transcript, Turn
from gateway.conversation.transport import CallerTranscript, ConversationEvent, Transport
from gateway.conversation.turns import Action, Event, State, TurnMachine
from gateway.conversation.vad import SAMPLE_RATE_HZ as VAD_RATE_HZ
from gateway.metrics import BARGE_IN_PAUSES, ERRORS
from shared.errors import UpstreamError

log = logging.getLogger(__name__)


class OverlapHost(Protocol):
    """What :class:`Overlap` uses of its call (:class:`~gateway.conversation.session.CallSession`)."""

    deps: Deps
    s: GatewaySettings
    call_sid: str
    transport: Transport
    listener: Listener
    machine: TurnMachine
    transcript: Transcript
    responder: Responder | None

    @property
    def profile(self) -> AgentProfile:
        """The agent answering."""

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as one of the call's tasks."""

    def persist_state(self) -> None:
        """Mirror the turn state to the live record."""

    def emit(self, event: ConversationEvent) -> None:
        """Show a conversation event on the caller's side (a browser carrier)."""

    async def caller_took_turn(self, at_ms: int | None = None) -> None:
        """The caller has the floor (barge-in when the agent speaks)."""

    def on_speech_ended(self, utt: SpeechEnded) -> None:
        """An utterance ended (answered unless the agent speaks)."""

    async def check_turn(self, pause: PauseDetected) -> None:
        """Ask Smart Turn whether the caller is done."""


class Overlap:
    """One call's handling of speech over the agent (see the module docstring).

    Args:
        session: the call (its transport, listener, machine, responder, STT).
    """

    def __init__(self, session: OverlapHost) -> None:
        self.session = session
        self.paused_at: float | None = None
        """Loop time the agent's audio was paused (``None``: not paused)."""
        self._timer: asyncio.Task[Any] | None = None
        self._judge: asyncio.Task[Any] | None = None
        self._pause_check: PauseDetected | None = None
        """A Smart Turn check that arrived while the words were being judged."""
        self._ended: SpeechEnded | None = None
        """An utterance that ended while its words were being judged."""

    @property
    def paused(self) -> bool:
        """The agent's audio is held."""
        return self.paused_at is not None

    def _speaking(self) -> bool:
        return self.session.machine.state is State.SPEAKING

    # ---- the pause ---------------------------------------------------------------------------
    def onset(self) -> None:
        """Caller speech over the agent began: hold its audio, and resume it if nothing is decided in time."""
        if self.paused or not self._speaking():
            return
        self.session.transport.pause()
        self.paused_at = now()
        log.info("call %s: paused the agent at caller speech", self.session.call_sid)
        timeout_s = self.session.s.listening.false_interruption_timeout_ms / 1000
        self._timer = self.session.spawn(self._resume_after(timeout_s), "pause-timeout")

    async def _resume_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._timer = None
        self.resume("timeout")

    def resume(self, why: str) -> None:
        """Not an interruption (``why``: noise, backchannel, timeout): the reply goes on where it stopped."""
        if not self.paused:
            return
        assert self.paused_at is not None
        held_ms = (now() - self.paused_at) * 1000
        self._reset()
        self.session.transport.resume()
        BARGE_IN_PAUSES.labels("resumed").inc()
        log.info("call %s: resumed the agent after %.0f ms (%s)", self.session.call_sid, held_ms, why)

    def interrupted(self) -> None:
        """The session interrupted the reply (clear + cancel): the pause, if any, was a real interruption."""
        if self.paused:
            BARGE_IN_PAUSES.labels("interrupted").inc()
        self._reset()

    def _reset(self) -> None:
        self.paused_at = None
        self._pause_check = self._ended = None
        current = asyncio.current_task()
        for task in (self._timer, self._judge):
            if task is not None and task is not current and not task.done():
                task.cancel()
        self._timer = self._judge = None

    # ---- the decision --------------------------------------------------------------------------
    def judge(self, pause: PauseStarted) -> None:
        """The caller paused while the agent is held: transcribe what they said and decide now."""
        if not self.paused or not self._speaking():
            return
        if self._judge is not None and not self._judge.done():
            self._judge.cancel()
        self._pause_check = self._ended = None
        self._judge = self.session.spawn(self._decide(pause), "interjection")

    def spoke_again(self) -> None:
        """The caller went on talking: the words being judged are not all of it."""
        if self._judge is not None and not self._judge.done():
            self._judge.cancel()
        self._judge = None
        self._pause_check = self._ended = None

    def deferred(self, event: PauseDetected | SpeechEnded) -> bool:
        """While words are judged, keep a Smart Turn check or the utterance's end for after the decision."""
        if self._judge is None or self._judge.done():
            return False
        if isinstance(event, PauseDetected):
            self._pause_check = event
        else:
            self._ended = event
        return True

    async def _decide(self, pause: PauseStarted) -> None:
        s = self.session
        text = await self.transcribe(pause.audio)
        if text is None:
            self.resume("no transcript")
            return
        if not self._speaking():
            return
        if only_backchannels(text, s.s.listening.backchannels):
            s.listener.drop_utterance()
            if text:
                log.info("call %s: backchannel %r did not interrupt", s.call_sid, text)
                s.transcript.backchannel(text)
            self.resume("backchannel" if text else "no words")
            return
        if len(words(text)) < s.s.listening.barge_in_min_words:  # "Wait, sorry…": not enough to tell yet
            self._judge = None
            if self._ended is not None:
                self.session.spawn(self.check_ended(self._ended), "interjection")
            return
        check, ended = self._pause_check, self._ended
        self._judge = None
        await s.caller_took_turn()  # barge-in: clear, cancel, trim; the caller has the floor
        assert s.responder is not None
        if ended is not None:
            s.on_speech_ended(ended)
            return
        s.responder.on_pause(pause)  # the turn may end on this very audio: transcribe it for the reply
        if check is not None:
            s.spawn(s.check_turn(check), "smart-turn")

    async def transcribe(self, audio: Any) -> str | None:
        """The words of ``audio`` (PCM16 16 kHz; ``""``: none, or noise), ``None`` if STT failed."""
        s = self.session
        try:
            if s.responder is None:
                text = str(await s.deps.stt.transcribe(audio, VAD_RATE_HZ))
            else:
                text = s.responder.screen(await s.responder.stt.transcribe(audio, VAD_RATE_HZ))
        except UpstreamError as exc:
            ERRORS.labels("stt").inc()
            log.warning("call %s: could not transcribe speech over the agent: %s", s.call_sid, exc)
            return None
        if text.strip():  # what the caller said over the agent shows on a screen, backchannels too
            s.emit(CallerTranscript(s.profile.corrections.apply(text)))
        return text

    async def check_ended(self, utt: SpeechEnded) -> None:
        """Speech shorter than the barge-in rule ended over the agent: interrupt only if its words say so."""
        s = self.session
        text = await self.transcribe(utt.audio)
        if text is None:
            self.resume("no transcript")
            return
        if is_backchannel(text, s.s.listening.backchannels, s.s.listening.barge_in_min_words):
            log.info("call %s: backchannel %r did not interrupt", s.call_sid, text)
            if text:
                s.transcript.backchannel(text)
            self.resume("backchannel")
            return
        if s.machine.state is State.SPEAKING:
            await s.caller_took_turn()  # barge-in: clear, cancel, trim
        if s.machine.handle(Event.SPEECH_ENDED) is Action.TRANSCRIBE:
            s.persist_state()
            corrected = s.profile.corrections.apply(text)
            assert s.responder is not None
            s.responder.answer_text(corrected, Turn.caller(corrected, raw_text=text))
