"""What the parts of one live call share: the :class:`CallContext` the session gives its
responder and its call actions, and the caller's :class:`Attention` (silence bookkeeping).

The session (:mod:`gateway.conversation.session`) implements :class:`CallContext`; the replying
(:mod:`gateway.conversation.responder`) and the call actions (:mod:`gateway.conversation.actions`)
depend only on this Protocol, never on the session, so no module imports back up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gateway.agents.profile import AgentProfile
    from gateway.config import GatewaySettings
    from gateway.conversation.deps import Deps
    from gateway.conversation.language import CallLanguage
    from gateway.conversation.transcript import Transcript
    from gateway.conversation.transport import ConversationEvent
    from gateway.conversation.turns import TurnMachine


def now() -> float:
    """The call's clock: the running loop's time, seconds (virtual under ``looptime`` in tests)."""
    return asyncio.get_running_loop().time()


@dataclass
class Attention:
    """When the caller last did something, and what the silence watchdog has done about it.

    Attributes:
        last_activity: loop time of the caller's last speech, or of the end of the agent's last reply.
        reprompted: the caller has been re-prompted since they last spoke.
        owed_answer: the caller's last turn got no answer (an upstream failed): the re-prompt and
            the goodbye speak of our trouble, not of the caller's silence.
    """

    last_activity: float = 0.0
    reprompted: bool = False
    owed_answer: bool = False

    def touch(self) -> None:
        """Something happened now: silence counts from here."""
        self.last_activity = now()

    def caller_spoke(self) -> None:
        """The caller is talking: silence counts from here and the re-prompt may come again.

        An owed answer stays owed until a reply starts playing (noise answers nothing).
        """
        self.touch()
        self.reprompted = False

    def owe_answer(self) -> None:
        """A caller turn went unanswered (an upstream failed); a failed reply is not caller silence."""
        self.touch()
        self.reprompted = False
        self.owed_answer = True


class CallContext(Protocol):
    """The live call, as its responder and call actions see it."""

    deps: Deps
    s: GatewaySettings
    call_sid: str
    machine: TurnMachine
    transcript: Transcript
    attention: Attention
    language: CallLanguage

    @property
    def profile(self) -> AgentProfile:
        """The agent answering this call (set once the call has started)."""

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as one of the call's tasks (cancelled, bounded, when the call ends)."""

    def record_action(self, action: dict[str, Any]) -> None:
        """Store one tool action in the call's record."""

    def persist_state(self) -> None:
        """Mirror the turn state to the live record."""

    def agent_busy(self) -> bool:
        """A reply is being made or its audio is still queued."""

    def caller_speaking(self) -> bool:
        """The endpointer holds an open utterance."""

    def end_call(self) -> None:
        """End the call now (the agent hangs up)."""

    def emit(self, event: ConversationEvent) -> None:
        """Show a conversation event on the caller's side (:meth:`Transport.emit`; a phone ignores it)."""
