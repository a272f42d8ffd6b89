"""A call always ends: bounded task close, the call record's writer, stream tokens and signed URLs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from gateway.conversation.record import CallRecord, RecordWriter
from gateway.conversation.tasks import TaskScope
from gateway.telephony.signature import StreamTokens, stream_signing_url


async def _swallows_cancel(times: int, started: asyncio.Event, release: list[bool] | None = None) -> None:
    """Like a library that eats ``times`` cancels (redis-py 8.1 inside a command), then a queue wait.

    ``release``: once it holds ``True`` the next cancel goes through (so the test's loop can close).
    """
    started.set()
    eaten = 0
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if eaten >= times or (release and release[0]):
                raise
            eaten += 1
            asyncio.current_task().uncancel()  # type: ignore[union-attr]


def test_scope_closes_a_task_that_swallows_one_cancel() -> None:
    async def scenario() -> tuple[list[str], float]:
        scope = TaskScope("CAtest")
        started = asyncio.Event()
        task = scope.spawn(_swallows_cancel(1, started), "writer")
        await started.wait()
        t0 = time.monotonic()
        abandoned = await scope.aclose(timeout_s=5.0, recancel_s=0.05)
        assert task.cancelled()
        return abandoned, time.monotonic() - t0

    abandoned, took = asyncio.run(scenario())
    assert abandoned == []
    assert took < 2.0  # the second cancel lands; the 5 s bound is not needed


def test_scope_abandons_a_task_that_never_stops_within_the_bound() -> None:
    async def scenario() -> tuple[list[str], float, asyncio.Task[Any]]:
        scope = TaskScope("CAtest")
        started = asyncio.Event()
        release = [False]
        task = scope.spawn(_swallows_cancel(10**9, started, release), "stuck")
        await started.wait()
        t0 = time.monotonic()
        abandoned = await scope.aclose(timeout_s=0.3, recancel_s=0.05)
        took = time.monotonic() - t0
        assert not task.done()
        release[0] = True
        task.cancel()
        return abandoned, took, task

    abandoned, took, _task = asyncio.run(scenario())
    assert abandoned == ["stuck:CAtest"]
    assert took < 1.5


def test_scope_reports_a_failing_task_and_refuses_spawns_while_closing() -> None:
    failures: list[str] = []

    async def boom() -> None:
        raise ValueError("bug")

    async def scenario() -> None:
        scope = TaskScope("CAx", on_error=lambda task, exc: failures.append(f"{task.get_name()}:{exc}"))
        scope.spawn(boom(), "reply")
        await asyncio.sleep(0.01)
        await scope.aclose(timeout_s=1.0)

        async def later() -> None:
            return None

        with pytest.raises(RuntimeError):
            scope.spawn(later(), "late")

    asyncio.run(scenario())
    assert failures == ["reply:CAx:bug"]


class FlakyStore:
    """A CallStore stand-in whose Redis is down while ``down`` is set; records what reached it."""

    def __init__(self) -> None:
        self.down = False
        self.calls: dict[str, dict[str, Any]] = {}
        self.turns: dict[str, list[dict[str, Any]]] = {}
        self.replaced = 0

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("Redis is down")

    async def start_call(self, call_sid: str, stream_sid: str, from_: str, to: str, started_at: float, gw: str) -> None:
        self._check()
        self.calls[call_sid] = {"status": "in-progress"}

    async def set_state(self, call_sid: str, state: str) -> None:
        self._check()
        self.calls[call_sid]["state"] = state

    async def append_turn(self, call_sid: str, turn: dict[str, Any]) -> None:
        self._check()
        self.turns.setdefault(call_sid, []).append(turn)

    async def append_action(self, call_sid: str, action: dict[str, Any]) -> None:
        self._check()

    async def end_call(self, call_sid: str, ended_at: float, status: str = "completed") -> None:
        self._check()
        self.calls[call_sid]["status"] = status

    async def replace_call(self, meta: dict[str, Any], turns: list[dict[str, Any]], actions: list[Any]) -> None:
        self._check()
        self.replaced += 1
        self.calls[meta["call_sid"]] = dict(meta)
        self.turns[meta["call_sid"]] = list(turns)


def test_writer_rewrites_the_whole_call_after_an_outage_without_duplicates() -> None:
    store = FlakyStore()

    async def scenario() -> bool:
        writer = RecordWriter(store, CallRecord("CA1", "MZ1", "+1", "+2", 1.0), retry_s=0.01)  # type: ignore[arg-type]
        writer.start()
        writer.append_turn({"role": "user", "text": "one"})
        await asyncio.wait_for(writer.synced.wait(), 2)
        store.down = True
        store.calls.clear()
        store.turns.clear()  # a restarted Redis keeps nothing
        writer.append_turn({"role": "user", "text": "two"})
        writer.set_state("thinking")
        await asyncio.sleep(0.1)
        store.down = False
        writer.append_turn({"role": "user", "text": "three"})
        writer.end(2.0)
        return await writer.close(timeout_s=2.0)

    assert asyncio.run(scenario()) is True
    assert [t["text"] for t in store.turns["CA1"]] == ["one", "two", "three"]
    assert store.calls["CA1"]["status"] == "completed"
    assert store.replaced >= 1


def test_writer_close_is_bounded_while_redis_stays_down() -> None:
    store = FlakyStore()

    async def scenario() -> tuple[bool, float, RecordWriter]:
        writer = RecordWriter(store, CallRecord("CA2", "MZ2", "+1", "+2", 1.0), retry_s=0.01)  # type: ignore[arg-type]
        store.down = True
        writer.start()
        writer.append_turn({"role": "user", "text": "kept in memory"})
        writer.end(2.0)
        t0 = time.monotonic()
        ok = await writer.close(timeout_s=0.3)
        return ok, time.monotonic() - t0, writer

    ok, took, writer = asyncio.run(scenario())
    assert ok is False and took < 2.0
    assert [t["text"] for t in writer.record.turns] == ["kept in memory"]
    assert writer.record.status == "completed"


def test_stream_tokens_bind_a_stream_to_one_call() -> None:
    tokens = StreamTokens("a" * 32, ttl_s=60)
    token = tokens.issue("CAaaa", now=1000.0)
    assert tokens.verify("CAaaa", token, now=1010.0) is None
    assert tokens.verify("CAbbb", token, now=1010.0) == "wrong call"
    assert tokens.verify("CAaaa", token, now=1061.0) == "expired"
    assert tokens.verify("CAaaa", None) == "missing"
    assert tokens.verify("CAaaa", "garbage") == "malformed"
    forged_expiry = "9999999999." + token.partition(".")[2]
    assert tokens.verify("CAaaa", forged_expiry, now=1010.0) == "wrong call"
    assert StreamTokens("b" * 32).verify("CAaaa", token, now=1010.0) == "wrong call"
    with pytest.raises(ValueError):
        StreamTokens("")


def test_stream_signing_url_is_the_twiml_ws_url() -> None:
    own = "ws://127.0.0.1:8080/twilio/stream"
    assert stream_signing_url(None, own, "/twilio/stream") == own
    assert (
        stream_signing_url("https://8080-pod.proxy.runpod.net/", own, "/twilio/stream")
        == "wss://8080-pod.proxy.runpod.net/twilio/stream"
    )
    assert stream_signing_url("http://gw.local", own, "/twilio/stream", "a=1") == "ws://gw.local/twilio/stream?a=1"
