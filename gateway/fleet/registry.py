"""The gateways' registry in Redis: who is alive, where its media streams go, how many calls it has.

Every gateway process keeps one hash alive (TTL ``GATEWAY_REDIS__HEARTBEAT_TTL_S``, refreshed three
times per TTL) and its id in a sorted set scored by the time of its last heartbeat:

    ``sb:gateway:{id}``            hash: ``url`` (advertised base URL, may be empty), ``calls`` (live
                                   calls), ``draining`` (``1`` after SIGTERM), ``at`` (Unix s)
    ``sb:fleet:gateways``          sorted set: gateway id → Unix time of its last heartbeat
    ``sb:fleet:reserved:{id}``     sorted set: CallSid → Unix time the voice webhook sent it to ``id``
    ``sb:fleet:route:{call_sid}``  hash: ``attempts`` (times the call was routed), ``last`` (gateway id)

The hash's existence is also the liveness the orphan sweeper checks
(:meth:`gateway.conversation.store.CallStore.gateway_alive`).

**Least loaded.** :meth:`GatewayRegistry.pick` runs one Lua script (atomic in Redis, so two
webhooks on two gateways never both take the last free slot): among the live, non-draining
gateways with a URL, not excluded, it takes the one with the fewest live calls plus calls sent to
it in the last :data:`RESERVATION_S` whose stream has not started there yet (a gateway's heartbeat
drops a reservation once the call is live, so a burst of calls between two heartbeats spreads
out too), and reserves the call there. The call's route record excludes, on the next webhook for
the same CallSid (Twilio's ``<Redirect>`` after a lost or failed stream), the gateway it was sent
to last: a SIGKILLed gateway's heartbeat outlives it by up to a TTL, but it is never chosen again
for the call it dropped. Keys are built inside the script (a standalone Redis, not Redis Cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from redis.asyncio import Redis

log = logging.getLogger(__name__)

RESERVATION_S = 15.0
"""How long a call sent to a gateway counts against it before its stream starts there, seconds."""
ROUTE_TTL_S = 3600
"""How long a call's route record (attempts, last gateway) is kept, seconds."""

_GATEWAYS = "sb:fleet:gateways"


def gateway_key(gateway_id: str) -> str:
    """``sb:gateway:{id}``: the gateway's heartbeat hash."""
    return f"sb:gateway:{gateway_id}"


def _reserved_key(gateway_id: str) -> str:
    return f"sb:fleet:reserved:{gateway_id}"


# ARGV: now, heartbeat ttl, reservation s, call_sid, route ttl, excluded ids...
# Returns {id, url, load, attempts} (id/url false when none fits).
_PICK = """
local now, ttl, reserve = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local sid, route_ttl = ARGV[4], tonumber(ARGV[5])
local route = 'sb:fleet:route:' .. sid
local excluded = {}
for i = 6, #ARGV do excluded[ARGV[i]] = true end
local last = redis.call('HGET', route, 'last')
if last then excluded[last] = true end
local attempts = redis.call('HINCRBY', route, 'attempts', 1)
redis.call('EXPIRE', route, route_ttl)
redis.call('ZREMRANGEBYSCORE', 'sb:fleet:gateways', '-inf', now - ttl)
local best, best_url, best_load = false, false, -1
for _, id in ipairs(redis.call('ZRANGE', 'sb:fleet:gateways', 0, -1)) do
  if not excluded[id] then
    local h = redis.call('HMGET', 'sb:gateway:' .. id, 'url', 'calls', 'draining')
    if h[1] and h[1] ~= '' and h[3] ~= '1' then
      local reserved = 'sb:fleet:reserved:' .. id
      redis.call('ZREMRANGEBYSCORE', reserved, '-inf', now - reserve)
      local load = (tonumber(h[2]) or 0) + redis.call('ZCARD', reserved)
      if best_load < 0 or load < best_load then best, best_url, best_load = id, h[1], load end
    end
  end
end
if best then
  redis.call('ZADD', 'sb:fleet:reserved:' .. best, now, sid)
  redis.call('EXPIRE', 'sb:fleet:reserved:' .. best, math.ceil(reserve) + 1)
  redis.call('HSET', route, 'last', best)
end
return {best, best_url, best_load, attempts}
"""


@dataclass(frozen=True)
class GatewayInfo:
    """One live gateway as the registry sees it (``url``: advertised base URL, empty when none)."""

    gateway_id: str
    url: str
    calls: int
    draining: bool


@dataclass(frozen=True)
class Pick:
    """The outcome of :meth:`GatewayRegistry.pick`.

    ``gateway_id``/``url``: the chosen gateway (``None`` when none fits); ``load``: its live plus
    reserved calls before this one; ``attempts``: how many times this CallSid has been routed,
    this time included.
    """

    gateway_id: str | None
    url: str | None
    load: int
    attempts: int


class GatewayRegistry:
    """This gateway's entry in the registry, and the choice of a gateway for a call.

    Args:
        redis: ``redis.asyncio.Redis`` with ``decode_responses=True``.
        gateway_id: this process's id (``<host>-<pid>-<hex>``).
        url: this gateway's advertised base URL (``None``: not offered to the others).
        live_calls: the CallSids this process serves now.
        ttl_s: heartbeat TTL, seconds; a gateway silent this long is dead.
    """

    def __init__(
        self,
        redis: Redis,
        gateway_id: str,
        url: str | None,
        live_calls: Callable[[], Collection[str]],
        ttl_s: float = 10.0,
    ) -> None:
        self.redis = redis
        self.gateway_id = gateway_id
        self.url = url.rstrip("/") if url else None
        self.live_calls = live_calls
        self.ttl_s = ttl_s
        self.draining = False
        self._task: asyncio.Task[None] | None = None
        self._pick = redis.register_script(_PICK)

    # ---- this gateway ------------------------------------------------------------------
    async def beat(self) -> None:
        """Write this gateway's heartbeat now (live calls, URL, drain state) and drop the
        reservations of calls that are live here.

        Raises:
            redis.RedisError: Redis is unreachable.
        """
        live = list(self.live_calls())
        now = time.time()
        key = gateway_key(self.gateway_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={"url": self.url or "", "calls": len(live), "draining": int(self.draining), "at": now},
            )
            pipe.expire(key, max(round(self.ttl_s), 1))
            pipe.zadd(_GATEWAYS, {self.gateway_id: now})
            if live:
                pipe.zrem(_reserved_key(self.gateway_id), *live)
            await pipe.execute()

    def start(self) -> None:
        """Start the heartbeat loop (every third of the TTL)."""
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="gateway-heartbeat")

    async def _loop(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception as exc:
                log.warning("gateway heartbeat failed: %r", exc)
            await asyncio.sleep(self.ttl_s / 3)

    async def drain(self) -> None:
        """Take no new calls: the registry stops offering this gateway (said at once, not at the next beat)."""
        self.draining = True
        try:
            await self.beat()
        except Exception as exc:
            log.warning("could not announce the drain: %r", exc)

    async def stop(self) -> None:
        """Stop the heartbeat and leave the registry (bounded; a dead Redis is logged)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        try:
            async with asyncio.timeout(2.0):
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.delete(gateway_key(self.gateway_id), _reserved_key(self.gateway_id))
                    pipe.zrem(_GATEWAYS, self.gateway_id)
                    await pipe.execute()
        except Exception as exc:
            log.warning("could not leave the gateway registry: %r", exc)

    # ---- the fleet ---------------------------------------------------------------------
    async def pick(self, call_sid: str, exclude: Collection[str] = ()) -> Pick:
        """Choose the least-loaded live gateway for ``call_sid`` and reserve the call there.

        Skipped: draining gateways, those without a URL, ``exclude``, and the gateway this call
        was sent to last (see the module docstring).

        Raises:
            redis.RedisError: Redis is unreachable.
        """
        args: list[str | float] = [time.time(), self.ttl_s, RESERVATION_S, call_sid, ROUTE_TTL_S, *exclude]
        best, url, load, attempts = await self._pick(args=args)
        if not best:
            return Pick(None, None, 0, int(attempts))
        return Pick(str(best), str(url), int(load), int(attempts))

    async def members(self) -> list[GatewayInfo]:
        """Every gateway whose heartbeat is live, oldest heartbeat first.

        Raises:
            redis.RedisError: Redis is unreachable.
        """
        ids = await self.redis.zrangebyscore(_GATEWAYS, time.time() - self.ttl_s, "+inf")
        out = []
        for gateway_id in map(str, ids):
            h = {str(k): str(v) for k, v in (await self.redis.hgetall(gateway_key(gateway_id))).items()}
            if h:
                out.append(GatewayInfo(gateway_id, h.get("url", ""), int(h.get("calls", 0)), h.get("draining") == "1"))
        return out
