"""What surrounds a call, in memory: the live-call store, the hooks (profile in, summary out), the carrier."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from gateway.agents.profile import AgentProfile, CallSummary
from shared.errors import UpstreamError
from tests.fakes.transport import FakeTransport


class FakeStore:
    """Satisfies :class:`~gateway.conversation.deps.LiveCallStore` with dicts.

    Attributes:
        calls: call sid → hash fields. turns / actions: call sid → list. states: every state set.
        down: every operation raises :class:`ConnectionError` while set (Redis unreachable).
    """

    def __init__(self) -> None:
        self.calls: dict[str, dict[str, Any]] = {}
        self.turns: dict[str, list[dict[str, Any]]] = {}
        self.actions: dict[str, list[dict[str, Any]]] = {}
        self.streams: dict[str, str] = {}
        self.grants: dict[str, str] = {}
        self.states: list[str] = []
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("scripted Redis outage")

    async def claim_stream(self, call_sid: str, stream_sid: str, ttl_s: int) -> str | None:
        """``None`` when claimed now, else the stream that holds the call."""
        self._check()
        holder = self.streams.setdefault(call_sid, stream_sid)
        return None if holder == stream_sid else holder

    async def start_call(
        self, call_sid: str, stream_sid: str, from_: str, to: str, started_at: float, gateway_id: str = ""
    ) -> None:
        """Create the live record."""
        self._check()
        self.calls[call_sid] = {
            "call_sid": call_sid,
            "stream_sid": stream_sid,
            "from": from_,
            "to": to,
            "status": "in-progress",
            "state": "listening",
            "started_at": started_at,
            "gateway": gateway_id,
        }
        self.turns.setdefault(call_sid, [])
        self.actions.setdefault(call_sid, [])

    async def replace_call(
        self, meta: dict[str, Any], turns: list[dict[str, Any]], actions: list[dict[str, Any]]
    ) -> None:
        """Write a whole call at once."""
        self._check()
        sid = str(meta["call_sid"])
        self.calls[sid] = {k: v for k, v in meta.items() if v is not None}
        self.turns[sid], self.actions[sid] = list(turns), list(actions)

    async def set_state(self, call_sid: str, state: str) -> None:
        """Record the turn state."""
        self._check()
        self.states.append(state)
        self.calls.setdefault(call_sid, {})["state"] = state

    async def append_turn(self, call_sid: str, turn: dict[str, Any]) -> None:
        """Append one turn."""
        self._check()
        self.turns.setdefault(call_sid, []).append(dict(turn))

    async def append_action(self, call_sid: str, action: dict[str, Any]) -> None:
        """Append one tool action."""
        self._check()
        self.actions.setdefault(call_sid, []).append(dict(action))

    async def end_call(self, call_sid: str, ended_at: float, status: str = "completed") -> None:
        """Close the record."""
        self._check()
        self.calls.setdefault(call_sid, {}).update(status=status, ended_at=ended_at, state="ended")

    async def get_call(self, call_sid: str) -> dict[str, Any] | None:
        """The record with its turns and actions, or ``None``."""
        self._check()
        if call_sid not in self.calls:
            return None
        return {
            **self.calls[call_sid],
            "turns": list(self.turns.get(call_sid, [])),
            "actions": list(self.actions.get(call_sid, [])),
        }

    async def stream_of(self, call_sid: str) -> str | None:
        """The stream holding the call."""
        self._check()
        return self.streams.get(call_sid)

    async def grant_resume(self, call_sid: str, grant: str, ttl_s: int) -> None:
        """Allow one stream with ``grant`` to take the call over."""
        self._check()
        self.grants[call_sid] = grant

    async def take_over_stream(self, call_sid: str, stream_sid: str, grant: str, ttl_s: int) -> bool:
        """Swap the claim to ``stream_sid`` when ``grant`` matches (used up)."""
        self._check()
        if self.grants.get(call_sid) != grant:
            return False
        del self.grants[call_sid]
        self.streams[call_sid] = stream_sid
        return True


@dataclass
class FakeHooks:
    """Satisfies :class:`~gateway.conversation.deps.CallHooks`: one fixed profile; summaries collected."""

    profile: AgentProfile
    asked: list[tuple[str, str, str]] = field(default_factory=list)
    summaries: list[CallSummary] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    """CallSids whose profile was asked for a resumed stream."""
    moved: list[str] = field(default_factory=list)
    """CallSids let go because another stream resumed them."""

    async def profile_for(self, call_sid: str, from_: str, to: str, resumed: bool = False) -> AgentProfile:
        """Always :attr:`profile`."""
        self.asked.append((call_sid, from_, to))
        if resumed:
            self.resumed.append(call_sid)
        return self.profile

    def call_moved(self, call_sid: str) -> None:
        """Note the call as moved."""
        self.moved.append(call_sid)

    async def resolve(self, to: str) -> AgentProfile:
        """Always :attr:`profile`."""
        return self.profile

    async def call_ended(self, summary: CallSummary) -> None:
        """Keep the summary."""
        self.summaries.append(summary)


class FakeCarrier:
    """Satisfies :class:`~gateway.conversation.deps.CarrierActions`; records hang-ups and transfers.

    Like Twilio, the carrier then ends the media stream itself (``stop``) ``ends_stream_after_s``
    later (``None``: never), through the call's :class:`FakeTransport`.

    Attributes:
        hang_ups: (loop time since the call started, call sid). transfers: (time, call sid, number).
        fail: every action raises :class:`UpstreamError` (service ``twilio``) while set.
    """

    def __init__(self, transport: FakeTransport | None = None, ends_stream_after_s: float | None = 0.5) -> None:
        self.transport = transport
        self.ends_stream_after_s = ends_stream_after_s
        self.hang_ups: list[tuple[float, str]] = []
        self.transfers: list[tuple[float, str, str]] = []
        self.fail = False
        self._tasks: set[asyncio.Task[None]] = set()

    def _at(self) -> float:
        return self.transport.now() if self.transport is not None else asyncio.get_running_loop().time()

    async def hang_up(self, call_sid: str) -> None:
        """End the call on the carrier's side."""
        self.hang_ups.append((self._at(), call_sid))
        self._act()

    async def transfer(self, call_sid: str, number: str) -> None:
        """Dial ``number``; the stream ends."""
        self.transfers.append((self._at(), call_sid, number))
        self._act()

    def _act(self) -> None:
        if self.fail:
            raise UpstreamError("twilio", "scripted REST failure (HTTP 500)", retryable=True, status=500)
        if self.transport is not None and self.ends_stream_after_s is not None:
            task = asyncio.get_running_loop().create_task(self._end_stream(self.transport, self.ends_stream_after_s))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _end_stream(transport: FakeTransport, after_s: float) -> None:
        await asyncio.sleep(after_s)
        transport.end_stream()

    async def aclose(self) -> None:
        """Cancel a pending end of stream (the test is over)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
