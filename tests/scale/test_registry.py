"""The gateway registry and the routing of a call, against a real Redis (gateway/fleet/).

Least loaded counts live calls and calls sent but not yet streaming (a burst between heartbeats
spreads); draining, URL-less and excluded gateways are skipped; the gateway a call was sent to
last is not chosen again for it; a live call asked for again mid-call is resumed with a one-time
grant, a finished or ending one is hung up, a replayed first webhook gets no grant.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from gateway.conversation.store import CallStore
from gateway.fleet.registry import GatewayRegistry
from gateway.fleet.routing import route_call
from tools.stack import Ports, Stack


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    stack = Stack(Ports.free(), reuse=False, webhook_sink=False, only={"redis"})
    stack.start(timeout_s=30)
    yield stack.redis_url
    stack.stop()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()


def gateway(redis: Redis, name: str, calls: set[str] | None = None, url: str | None = "auto") -> GatewayRegistry:
    live = calls if calls is not None else set()
    return GatewayRegistry(redis, name, f"http://{name}:8080" if url == "auto" else url, lambda: live, ttl_s=10)


async def test_least_loaded_counts_live_and_reserved_calls(redis: Redis) -> None:
    a_calls, b_calls = {"CA1", "CA2"}, {"CA3"}
    a, b = gateway(redis, "a", a_calls), gateway(redis, "b", b_calls)
    await a.beat()
    await b.beat()
    picks = [(await a.pick(f"CAnew{i}")).gateway_id for i in range(4)]
    # b (1 live) gets the first; then 2 vs 2 (a first by order), then b, then a: reservations count
    assert picks.count("a") == 2 and picks.count("b") == 2 and picks[0] == "b"
    b_calls.add("CAnew0")  # the stream started on b: its heartbeat drops the reservation, counts it live
    await b.beat()
    assert await redis.zcard("sb:fleet:reserved:b") == 1
    entry = await redis.hgetall("sb:gateway:b")
    assert entry["calls"] == "2" and entry["url"] == "http://b:8080" and entry["draining"] == "0"


async def test_draining_urlless_and_excluded_gateways_are_skipped(redis: Redis) -> None:
    a, b, c = gateway(redis, "a"), gateway(redis, "b"), gateway(redis, "c", url=None)
    for g in (a, b, c):
        await g.beat()
    await a.drain()
    assert (await b.pick("CA1")).gateway_id == "b"
    assert (await b.pick("CA2", exclude=["b"])).gateway_id is None
    members = {m.gateway_id: m for m in await a.members()}
    assert members["a"].draining and not members["b"].draining and members["c"].url == ""


async def test_the_gateway_a_call_was_sent_to_is_not_chosen_again_for_it(redis: Redis) -> None:
    a, b = gateway(redis, "a"), gateway(redis, "b")
    await a.beat()
    await b.beat()
    first = await a.pick("CA1")
    second = await a.pick("CA1")  # Twilio came back: the stream there was lost or never started
    assert first.gateway_id != second.gateway_id and second.attempts == 2


async def test_a_stopped_gateway_leaves_the_registry(redis: Redis) -> None:
    a = gateway(redis, "a")
    await a.beat()
    await a.stop()
    assert not await redis.exists("sb:gateway:a") and await redis.zcard("sb:fleet:gateways") == 0


async def test_routing_new_live_ending_and_replayed_calls(redis: Redis) -> None:
    store = CallStore(redis)
    here, other = gateway(redis, "here", url=None), gateway(redis, "other")
    await other.beat()
    kw = {"max_routes": 5, "grant_ttl_s": 60}
    new = await route_call(here, store, "CA1", mid_call=False, **kw)
    assert new.action == "connect" and new.url == "http://other:8080" and new.resume_grant is None
    await store.start_call("CA1", "MZ1", "+1", "+2", 100.0, "other")
    await store.claim_stream("CA1", "MZ1", 600)
    replay = await route_call(here, store, "CA1", mid_call=False, **kw)  # a replayed first webhook
    assert replay.resume_grant is None
    lost = await route_call(here, store, "CA1", mid_call=True, **kw)  # Twilio's <Redirect>: the stream died
    assert lost.action == "connect" and lost.url is None and lost.resume_grant  # "other" lost it: here
    assert not await store.take_over_stream("CA1", "MZ2", "forged", 600)
    assert await store.take_over_stream("CA1", "MZ2", lost.resume_grant, 600)
    assert await store.stream_of("CA1") == "MZ2"
    assert not await store.take_over_stream("CA1", "MZ3", lost.resume_grant, 600)  # used up
    await store.set_state("CA1", "ending")
    assert (await route_call(here, store, "CA1", mid_call=True, **kw)).action == "hangup"
    await store.end_call("CA1", 200.0)
    assert (await route_call(here, store, "CA1", mid_call=True, **kw)).action == "hangup"


async def test_routing_gives_up_after_max_routes_and_a_draining_gateway_refuses_new_calls(redis: Redis) -> None:
    store = CallStore(redis)
    here = gateway(redis, "here", url=None)
    kw = {"mid_call": False, "grant_ttl_s": 60}
    assert (await route_call(here, store, "CA9", max_routes=2, **kw)).action == "connect"
    assert (await route_call(here, store, "CA9", max_routes=2, **kw)).action == "connect"
    gave_up = await route_call(here, store, "CA9", max_routes=2, **kw)
    assert gave_up.action == "hangup" and gave_up.apology
    await here.drain()
    assert (await route_call(here, store, "CA10", max_routes=2, **kw)).action == "busy"


async def test_without_redis_the_call_streams_here(redis_url: str) -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", decode_responses=True, socket_connect_timeout=0.2)
    here = gateway(dead, "here", url=None)
    route = await route_call(here, CallStore(dead), "CA1", mid_call=True, max_routes=5, grant_ttl_s=60)
    assert route.action == "connect" and route.url is None and route.resume_grant is None
    await dead.aclose()
