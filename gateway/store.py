"""Per-call state in Redis. The only module that knows the key names.

Keys (prefix ``sb:``):
    ``sb:call:{call_sid}``        hash: call_sid, stream_sid, from, to, status, state, started_at, ended_at
    ``sb:call:{call_sid}:turns``  list of JSON turns, in order: {role, text, started_at, ended_at, ...}
    ``sb:call:{call_sid}:actions`` list of JSON tool actions: {tool, arguments, at}
    ``sb:calls:active``           set of live call sids

Timestamps are Unix seconds (float). Any gateway process can read a live call; a restarted
gateway keeps finished turns (Redis persistence permitting).
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

_PREFIX = "sb"


def _call_key(call_sid: str) -> str:
    return f"{_PREFIX}:call:{call_sid}"


def _turns_key(call_sid: str) -> str:
    return f"{_PREFIX}:call:{call_sid}:turns"


def _actions_key(call_sid: str) -> str:
    return f"{_PREFIX}:call:{call_sid}:actions"


_ACTIVE = f"{_PREFIX}:calls:active"


class CallStore:
    """Async access to call records and turns.

    Args:
        redis: a ``redis.asyncio.Redis`` with ``decode_responses=True``.
        ttl_s: how long a finished call's keys live.
    """

    def __init__(self, redis: Redis, ttl_s: int = 7 * 24 * 3600) -> None:
        self.redis = redis
        self.ttl_s = ttl_s

    async def start_call(self, call_sid: str, stream_sid: str, from_: str, to: str, started_at: float) -> None:
        """Create the call record and mark it active."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                _call_key(call_sid),
                mapping={
                    "call_sid": call_sid,
                    "stream_sid": stream_sid,
                    "from": from_,
                    "to": to,
                    "status": "in-progress",
                    "state": "listening",
                    "started_at": started_at,
                },
            )
            pipe.sadd(_ACTIVE, call_sid)
            await pipe.execute()

    async def set_state(self, call_sid: str, state: str) -> None:
        """Record the turn state (listening/user_speaking/thinking/speaking)."""
        await self.redis.hset(_call_key(call_sid), "state", state)

    async def append_turn(self, call_sid: str, turn: dict[str, Any]) -> None:
        """Append one turn (JSON-serialisable dict with at least ``role`` and ``text``)."""
        await self.redis.rpush(_turns_key(call_sid), json.dumps(turn))

    async def append_action(self, call_sid: str, action: dict[str, Any]) -> None:
        """Record a tool action (e.g. a booking's structured fields) on the call."""
        await self.redis.rpush(_actions_key(call_sid), json.dumps(action))

    async def actions(self, call_sid: str) -> list[dict[str, Any]]:
        """The call's tool actions, oldest first."""
        return [json.loads(a) for a in await self.redis.lrange(_actions_key(call_sid), 0, -1)]

    async def end_call(self, call_sid: str, ended_at: float, status: str = "completed") -> None:
        """Close the call, drop it from the active set and start the retention TTL."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(_call_key(call_sid), mapping={"status": status, "ended_at": ended_at, "state": "ended"})
            pipe.srem(_ACTIVE, call_sid)
            pipe.expire(_call_key(call_sid), self.ttl_s)
            pipe.expire(_turns_key(call_sid), self.ttl_s)
            pipe.expire(_actions_key(call_sid), self.ttl_s)
            await pipe.execute()

    async def turns(self, call_sid: str) -> list[dict[str, Any]]:
        """All turns of a call, oldest first."""
        return [json.loads(t) for t in await self.redis.lrange(_turns_key(call_sid), 0, -1)]

    async def get_call(self, call_sid: str) -> dict[str, Any] | None:
        """The call record with its ``turns``, or ``None`` if unknown."""
        record: dict[str, Any] = dict(await self.redis.hgetall(_call_key(call_sid)))  # type: ignore[arg-type]
        if not record:
            return None
        for key in ("started_at", "ended_at"):
            if key in record:
                record[key] = float(record[key])
        record["turns"] = await self.turns(call_sid)
        record["actions"] = await self.actions(call_sid)
        return record

    async def active_calls(self) -> set[str]:
        """Sids of calls in progress."""
        return {str(m) for m in await self.redis.smembers(_ACTIVE)}
