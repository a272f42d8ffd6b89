"""Call control: what happens after the agent speaks (tools, hang-up, transfer) and on silence.

A mixin of :class:`gateway.conversation.session.CallSession`, split out by responsibility; the attributes and
methods it relies on are declared below and provided by the session.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateway.conversation.llm_tools import ToolCall
from gateway.conversation.speaker import Reply
from gateway.conversation.turns import State
from gateway.metrics import ERRORS
from shared.errors import UpstreamError

if TYPE_CHECKING:
    from fastapi import WebSocket

    from gateway.agents.profile import AgentProfile
    from gateway.config import GatewaySettings
    from gateway.conversation.endpointing import Endpointer
    from gateway.conversation.session import Deps
    from gateway.conversation.turns import TurnMachine
    from gateway.telephony.playback import Playback

log = logging.getLogger("gateway.conversation.session")


class CallControl:
    """Silence handling, tool calls, hang-up and transfer for one call."""

    if TYPE_CHECKING:
        s: GatewaySettings
        deps: Deps
        ws: WebSocket
        call_sid: str
        machine: TurnMachine
        playback: Playback | None
        _endpointer: Endpointer
        _reply_task: asyncio.Task[None] | None
        _last_activity: float
        _reprompted: bool
        _owed_answer: bool
        _after_reply: dict[str, Callable[[], Awaitable[None]]]

        @property
        def _profile(self) -> AgentProfile: ...

        async def _say(self, kind: str, text: str) -> Reply: ...

        def _append_action(self, action: dict[str, Any]) -> None: ...

        def end_call(self) -> None: ...

    async def _silence_watchdog(self) -> None:
        """Re-prompt a silent caller, then say goodbye and hang up.

        A caller whose last turn got no answer (STT, LLM or TTS failed) is not silent: we owe them
        an answer. Then the re-prompt repeats the apology and the goodbye says the trouble is ours
        (``GATEWAY_TROUBLE_GOODBYE_TEXT``), never "I haven't heard anything".
        """
        while True:
            await asyncio.sleep(0.25)
            busy = (self._reply_task is not None and not self._reply_task.done()) or (
                self.playback is not None and self.playback.pending_frames > 0
            )
            if busy:  # the agent is speaking or about to: silence counts from when it is done
                self._last_activity = time.monotonic()
                continue
            if self.machine.state is not State.LISTENING or self._endpointer.in_speech:
                continue
            idle = time.monotonic() - self._last_activity
            owed = self._owed_answer
            if idle >= self.s.hangup_after_s:
                goodbye = self.s.trouble_goodbye_text if owed else self.s.goodbye_text
                await self._then(await self._say("goodbye", goodbye), self._hang_up)
                return
            if idle >= self.s.reprompt_after_s and not self._reprompted:
                self._reprompted = True
                await self._say("reprompt", self.s.trouble_reprompt_text if owed else self.s.reprompt_text)

    async def _then(self, reply: Reply, action: Callable[[], Awaitable[None]]) -> None:
        """Run ``action`` once ``reply`` has been heard (at once if nothing was said)."""
        if reply.sentences and reply.end_mark not in reply.acked:
            self._after_reply[reply.reply_id] = action
        else:
            await action()

    async def _run_tools(self, calls: list[ToolCall], reply: Reply) -> None:
        """Carry out the model's tool calls after (or instead of) its spoken reply."""
        for call in calls:
            if call.name not in self.s.tools:
                log.warning("call %s: ignored a call to unknown or disabled tool %r", self.call_sid, call.name)
                continue
            log.info("call %s: tool %s(%s)", self.call_sid, call.name, call.arguments)
            action = {"tool": call.name, "arguments": call.arguments, "at": time.time()}
            self._append_action(action)
            if call.name == "end_call":
                said = reply if reply.sentences else await self._say("goodbye", self.s.end_call_goodbye)
                await self._then(said, self._hang_up)
            elif call.name == "transfer_call":
                number = self._profile.transfer_number
                if not number:
                    await self._say("apology", "Sorry, I can't transfer you right now, but I can take a message.")
                    continue
                said = reply if reply.sentences else await self._say("transfer", "Please hold while I transfer you.")
                await self._then(said, functools.partial(self._transfer, number))
            elif not reply.sentences:  # take_message / book_appointment without a spoken confirmation
                await self._say("confirm", "Thanks, I've noted that. Is there anything else I can help with?")

    async def _transfer(self, number: str) -> None:
        """Leave the media stream and dial ``number`` (Twilio ends this stream itself)."""
        if self.deps.twilio is None:
            log.error("call %s: transfer to %s needs GATEWAY_TWILIO_ACCOUNT_SID", self.call_sid, number)
            return
        try:
            await self.deps.twilio.transfer(self.call_sid, number)
        except UpstreamError as exc:
            ERRORS.labels("twilio").inc()
            log.error("call %s: %s", self.call_sid, exc)

    async def _hang_up(self) -> None:
        """End the call through Twilio's REST API (when configured), then end the stream.

        The session closes the socket and finishes the call whether or not the REST call worked.
        """
        try:
            if self.deps.twilio is not None:
                try:
                    async with asyncio.timeout(10.0):
                        await self.deps.twilio.hang_up(self.call_sid)
                except (UpstreamError, TimeoutError) as exc:
                    ERRORS.labels("twilio").inc()
                    log.error("call %s: hang-up through Twilio failed: %r", self.call_sid, exc)
        finally:
            self.end_call()
