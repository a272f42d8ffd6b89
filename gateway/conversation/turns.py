"""The per-call turn state machine. Pure: no I/O, no clock; the session performs the actions.

States (as in most voice-agent frameworks): LISTENING → USER_SPEAKING → THINKING → SPEAKING → LISTENING.
Caller speech while the agent is THINKING or SPEAKING is an interruption: the session cancels
the reply (and, when SPEAKING, clears Twilio's buffer: barge-in).
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """Who holds the floor."""

    LISTENING = "listening"
    USER_SPEAKING = "user_speaking"
    THINKING = "thinking"
    SPEAKING = "speaking"


class Event(StrEnum):
    """Inputs to the machine."""

    SPEECH_STARTED = "speech_started"
    SPEECH_ENDED = "speech_ended"
    REPLY_AUDIO_STARTED = "reply_audio_started"
    REPLY_FINISHED = "reply_finished"
    REPLY_ABANDONED = "reply_abandoned"
    """No reply (empty transcript, an error with nothing to say)."""


class Action(StrEnum):
    """What the session must do on a transition."""

    NONE = "none"
    TRANSCRIBE = "transcribe"
    CANCEL_REPLY = "cancel_reply"
    """Caller spoke again before any reply audio: drop the pending reply, keep the transcript."""
    BARGE_IN = "barge_in"
    """Caller spoke over the agent: send ``clear``, cancel LLM/TTS, trim history to what was heard."""


_TABLE: dict[tuple[State, Event], tuple[State, Action]] = {
    (State.LISTENING, Event.SPEECH_STARTED): (State.USER_SPEAKING, Action.NONE),
    (State.LISTENING, Event.SPEECH_ENDED): (State.THINKING, Action.TRANSCRIBE),
    (State.LISTENING, Event.REPLY_AUDIO_STARTED): (State.SPEAKING, Action.NONE),
    (State.USER_SPEAKING, Event.SPEECH_ENDED): (State.THINKING, Action.TRANSCRIBE),
    (State.THINKING, Event.SPEECH_STARTED): (State.USER_SPEAKING, Action.CANCEL_REPLY),
    (State.THINKING, Event.REPLY_AUDIO_STARTED): (State.SPEAKING, Action.NONE),
    (State.THINKING, Event.REPLY_ABANDONED): (State.LISTENING, Action.NONE),
    (State.THINKING, Event.REPLY_FINISHED): (State.LISTENING, Action.NONE),
    (State.SPEAKING, Event.SPEECH_STARTED): (State.USER_SPEAKING, Action.BARGE_IN),
    (State.SPEAKING, Event.REPLY_FINISHED): (State.LISTENING, Action.NONE),
    (State.SPEAKING, Event.REPLY_ABANDONED): (State.LISTENING, Action.NONE),
}


class TurnMachine:
    """Holds the current :class:`State`; :meth:`handle` returns the action for an event.

    Events that do not apply in the current state (e.g. a late ``REPLY_FINISHED`` after a
    barge-in) leave the state unchanged and return ``Action.NONE``.
    """

    def __init__(self, state: State = State.LISTENING) -> None:
        self.state = state

    def handle(self, event: Event) -> Action:
        """Apply ``event``; return what the session must do."""
        nxt = _TABLE.get((self.state, event))
        if nxt is None:
            return Action.NONE
        self.state, action = nxt
        return action
