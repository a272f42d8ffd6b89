"""Call actions: what happens after the agent speaks (tools, hang-up, transfer) and on silence.

:class:`CallActions` works through the :class:`~gateway.conversation.context.CallContext` and
the carrier's :class:`~gateway.conversation.deps.CarrierActions` (Twilio REST); without a
carrier the call simply ends. A hang-up or a transfer waits until the reply before it has been
heard to its end mark.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from gateway.conversation.context import CallContext, now
from gateway.conversation.llm_tools import ToolCall
from gateway.conversation.replies import Reply
from gateway.conversation.turns import State
from gateway.metrics import ERRORS
from shared.errors import UpstreamError


def ctx_line(ctx: CallContext, key: str, english: str) -> str:
    """A fixed line in the call's language (``english``, as configured, in English)."""
    return ctx.language.line(key, english)


log = logging.getLogger(__name__)

Say = Callable[[str, str], Awaitable[Reply]]

WATCH_INTERVAL_S = 0.25
"""How often the silence watchdog looks."""


class CallActions:
    """Silence handling, tool calls, hang-up and transfer for one call.

    Args:
        ctx: the live call.
        say: speaks a fixed text as its own reply of a kind (``responder.say``).
    """

    def __init__(self, ctx: CallContext, say: Say) -> None:
        self.ctx = ctx
        self.say = say

    async def silence_watchdog(self) -> None:
        """Re-prompt a silent caller after ``reprompt_after_s``, then say goodbye and hang up.

        Silence counts from the end of the agent's last reply or the caller's last speech. A
        caller whose last turn got no answer (an upstream failed) is owed one: the re-prompt and
        the goodbye then speak of our trouble (``GATEWAY_AGENT__TROUBLE_*``), never "I haven't heard anything".
        """
        ctx, s, attention = self.ctx, self.ctx.s, self.ctx.attention
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            if ctx.agent_busy():  # speaking or about to: silence counts from when it is done
                attention.touch()
                continue
            if ctx.machine.state is not State.LISTENING or ctx.caller_speaking():
                continue
            idle = now() - attention.last_activity
            owed = attention.owed_answer
            if idle >= s.call.hangup_after_s:
                goodbye = await self.say(
                    "goodbye",
                    ctx_line(self.ctx, "trouble_goodbye", s.agent.trouble_goodbye_text)
                    if owed
                    else ctx_line(self.ctx, "goodbye", s.agent.goodbye_text),
                )
                self.after(goodbye, self.hang_up)
                return
            if idle >= s.call.reprompt_after_s and not attention.reprompted:
                attention.reprompted = True
                await self.say(
                    "reprompt",
                    ctx_line(self.ctx, "trouble_reprompt", s.agent.trouble_reprompt_text)
                    if owed
                    else ctx_line(self.ctx, "reprompt", s.agent.reprompt_text),
                )

    def after(self, reply: Reply, action: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``action`` once ``reply`` has been heard to its end (at once if it said nothing).

        An interrupted reply cancels the action: the caller had more to say.
        """
        if not reply.spoken:
            self.ctx.spawn(action(), "after-reply")
            return

        def heard(done: Reply) -> None:
            if done.played_out:
                self.ctx.spawn(action(), "after-reply")

        reply.add_done_callback(heard)

    async def run_tools(self, calls: list[ToolCall], reply: Reply) -> None:
        """Carry out the model's tool calls after (or instead of) its spoken ``reply``."""
        ctx = self.ctx
        for call in calls:
            if call.name not in ctx.s.agent.tools:
                log.warning("call %s: ignored a call to unknown or disabled tool %r", ctx.call_sid, call.name)
                continue
            log.info("call %s: tool %s(%s)", ctx.call_sid, call.name, call.arguments)
            ctx.record_action({"tool": call.name, "arguments": call.arguments, "at": time.time()})
            if call.name == "end_call":
                said = (
                    reply
                    if reply.spoken
                    else await self.say("goodbye", ctx_line(ctx, "end_call_goodbye", ctx.s.agent.end_call_goodbye))
                )
                self.after(said, self.hang_up)
            elif call.name == "transfer_call":
                number = ctx.profile.transfer_number
                if not number:
                    await self.say(
                        "apology",
                        ctx_line(
                            ctx, "no_transfer", "Sorry, I can't transfer you right now, but I can take a message."
                        ),
                    )
                    continue
                said = (
                    reply
                    if reply.spoken
                    else await self.say("transfer", ctx_line(ctx, "transfer", "Please hold while I transfer you."))
                )
                self.after(said, functools.partial(self.transfer, number))
            elif not reply.spoken:  # take_message / book_appointment without a spoken confirmation
                await self.say("confirm", "Thanks, I've noted that. Is there anything else I can help with?")

    async def transfer(self, number: str) -> None:
        """Leave the conversation and dial ``number`` (the carrier then ends this stream itself)."""
        ctx = self.ctx
        if ctx.deps.carrier is None:
            log.error("call %s: transfer to %s needs carrier credentials (GATEWAY_TWILIO__*)", ctx.call_sid, number)
            return
        try:
            await ctx.deps.carrier.transfer(ctx.call_sid, number)
        except UpstreamError as exc:
            ERRORS.labels(exc.service).inc()
            log.error("call %s: transfer failed: %s", ctx.call_sid, exc)

    async def hang_up(self) -> None:
        """End the call through the carrier (when configured), then end the conversation.

        The call ends whether or not the carrier's hang-up worked.
        """
        ctx = self.ctx
        try:
            if ctx.deps.carrier is not None:
                try:
                    async with asyncio.timeout(10.0):
                        await ctx.deps.carrier.hang_up(ctx.call_sid)
                except (UpstreamError, TimeoutError) as exc:
                    ERRORS.labels("carrier").inc()
                    log.error("call %s: hang-up through the carrier failed: %r", ctx.call_sid, exc)
        finally:
            ctx.end_call()
