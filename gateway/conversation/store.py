"""Per-call state in Redis. The only module that knows the key names.

Keys (prefix ``sb:``):
    ``sb:call:{call_sid}``        hash: call_sid, stream_sid, from, to, status, state, started_at, ended_at
    ``sb:call:{call_sid}:turns``  list of JSON turns, in order: {role, text, started_at, ended_at, ...}
    ``sb:call:{call_sid}:actions`` list of JSON tool actions: {tool, arguments, at}
    ``sb:call:{call_sid}:stream`` the streamSid serving the call (one live stream per CallSid)
    ``sb:call:{call_sid}:resume`` a one-time grant for a new stream to take a live call over
    ``sb:calls:active``           set of live call sids
    ``sb:gateway:{gateway_id}``   heartbeat of a gateway process (expires when it dies; written by
                                  :mod:`gateway.fleet.registry`)

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


def _stream_key(call_sid: str) -> str:
    return f"{_PREFIX}:call:{call_sid}:stream"


def _resume_key(call_sid: str) -> str:
    return f"{_PREFIX}:call:{call_sid}:resume"


# KEYS: resume grant, stream claim. ARGV: grant, new streamSid, claim ttl. 1 when taken over.
_TAKE_OVER = """
local grant = redis.call('GET', KEYS[1])
if not grant or grant ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""


def _gateway_key(gateway_id: str) -> str:
    return f"{_PREFIX}:gateway:{gateway_id}"


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

    async def start_call(
        self, call_sid: str, stream_sid: str, from_: str, to: str, started_at: float, gateway_id: str = ""
    ) -> None:
        """Create the call record and mark it active (``gateway_id``: the process serving it)."""
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
                    "gateway": gateway_id,
                },
            )
            pipe.sadd(_ACTIVE, call_sid)
            await pipe.execute()

    async def replace_call(
        self,
        meta: dict[str, Any],
        turns: list[dict[str, Any]],
        actions: list[dict[str, Any]],
    ) -> None:
        """Write a whole call at once, replacing what Redis holds (after an outage or a restart).

        ``meta`` holds the hash fields (``call_sid``, ``status``, ``state``…); a call whose status
        is not ``in-progress`` is written closed (not active, retention TTL started).
        """
        call_sid = str(meta["call_sid"])
        keys = (_call_key(call_sid), _turns_key(call_sid), _actions_key(call_sid))
        live = meta.get("status") == "in-progress"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(*keys)
            pipe.hset(keys[0], mapping={k: v for k, v in meta.items() if v is not None})
            if turns:
                pipe.rpush(keys[1], *[json.dumps(t) for t in turns])
            if actions:
                pipe.rpush(keys[2], *[json.dumps(a) for a in actions])
            if live:
                pipe.sadd(_ACTIVE, call_sid)
            else:
                pipe.srem(_ACTIVE, call_sid)
                for key in keys:
                    pipe.expire(key, self.ttl_s)
            await pipe.execute()

    async def claim_stream(self, call_sid: str, stream_sid: str, ttl_s: int) -> str | None:
        """Make ``stream_sid`` the one stream of ``call_sid`` for ``ttl_s`` seconds.

        The claim outlives the call (it expires, it is not released), so a replayed ``start`` for a
        finished call is refused too.

        Returns:
            ``None`` when claimed now, else the streamSid that claimed the call first.
        """
        key = _stream_key(call_sid)
        if await self.redis.set(key, stream_sid, nx=True, ex=ttl_s):
            return None
        return str(await self.redis.get(key) or "?")

    async def stream_of(self, call_sid: str) -> str | None:
        """The streamSid that holds the call's claim now, or ``None``."""
        value = await self.redis.get(_stream_key(call_sid))
        return None if value is None else str(value)

    async def grant_resume(self, call_sid: str, grant: str, ttl_s: int) -> None:
        """Allow one new stream presenting ``grant`` to take the live call over (for ``ttl_s`` seconds)."""
        await self.redis.set(_resume_key(call_sid), grant, ex=ttl_s)

    async def take_over_stream(self, call_sid: str, stream_sid: str, grant: str, ttl_s: int) -> bool:
        """Make ``stream_sid`` the call's one stream if ``grant`` is the call's resume grant (used up).

        Returns:
            ``True`` when the call is now ``stream_sid``'s (the lost stream's session sees it and
            lets go), ``False`` for a wrong, used or expired grant.
        """
        keys = [_resume_key(call_sid), _stream_key(call_sid)]
        return bool(await self.redis.eval(_TAKE_OVER, 2, *keys, grant, stream_sid, ttl_s))

    async def call_meta(self, call_sid: str) -> dict[str, str] | None:
        """The call's hash (``status``, ``state``, ``gateway``…) without its turns, or ``None``."""
        record = await self.redis.hgetall(_call_key(call_sid))
        return {str(k): str(v) for k, v in record.items()} if record else None

    async def gateway_alive(self, gateway_id: str) -> bool:
        """Whether ``gateway_id``'s heartbeat has not expired."""
        return bool(gateway_id) and bool(await self.redis.exists(_gateway_key(gateway_id)))

    async def claim_sweep(self, call_sid: str, ttl_s: int = 60) -> bool:
        """One gateway at a time finishes an orphaned call: true for the one that gets it."""
        return bool(await self.redis.set(f"{_call_key(call_sid)}:sweep", "1", nx=True, ex=ttl_s))

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
