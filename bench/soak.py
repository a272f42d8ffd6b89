"""``make soak``: N concurrent callers for M minutes against the whole local stack, then the ledger.

Every caller places call after call until the time is up: greeting, each line of
:data:`bench.load.SCRIPT` (real Kokoro speech, real pauses), then a barge-in into the last reply,
then it hangs up (``stop``); every fifth call it hangs up by closing the socket mid-reply instead,
and every seventh it stays silent until the gateway hangs up on it. The stack is the embedded CPU
default (llama.cpp LLM with post-call extraction, faster-whisper, Kokoro, Redis, SQLite with the
webhook outbox) started fresh on free ports.

The ledger, read from the durable record (the ``call.completed`` webhooks the development sink
received), not from the callers' own view:

* **answered-turn ratio**: caller lines that got a spoken answer (a ``reply-*`` turn with text
  after the caller's turn, the turn not marked ``unanswered``) over caller lines spoken;
* **calls completed**: calls whose ``call.completed`` arrived with status ``completed``, over calls
  placed; **webhooks delivered**: ``call.completed`` events received, over calls placed;
* **RSS and open file descriptors** of every service at the start (after a warm-up call), at the
  end of the load, and after ``--idle-s`` of idle (``/proc/<pid>/status``, ``/proc/<pid>/fd``).

Writes JSON (``--json``) and prints a table. Exit status 1 when a turn went unanswered, a call did
not complete, or a webhook is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.load import CallOutcome, Line, _barge_in, _say, _speak_and_wait, synthesize_lines
from bench.script import BARGE_IN_LINE, SCRIPT
from shared.config import PROJECT_ROOT
from tools.stack import Ports, Stack
from tools.twilio_sim import SimulatedCall

log = logging.getLogger("soak")


@dataclass
class Placed:
    """One call a soak caller placed, and what it did."""

    call_sid: str
    kind: str
    """``script`` (stop at the end), ``drop`` (socket closed mid-reply) or ``silent``."""
    lines_spoken: int = 0
    error: str | None = None


@dataclass
class Snapshot:
    """Resident memory (MiB) and open file descriptors of each service process."""

    at: str
    rss_mib: dict[str, float] = field(default_factory=dict)
    fds: dict[str, int] = field(default_factory=dict)


def snapshot(stack: Stack, at: str) -> Snapshot:
    """Read ``/proc`` for every process the stack started."""
    snap = Snapshot(at)
    for svc in stack.services:
        if svc.proc is None or svc.proc.poll() is not None:
            continue
        pid = svc.proc.pid
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    snap.rss_mib[svc.name] = round(int(line.split()[1]) / 1024, 1)
            snap.fds[svc.name] = len(os.listdir(f"/proc/{pid}/fd"))
    return snap


async def _one_call(url: str, n: int, lines: list[Line], barge: Line, timeout_s: float) -> Placed:
    call = SimulatedCall(url)
    kind = "silent" if n % 7 == 6 else "drop" if n % 5 == 4 else "script"
    placed = Placed(call.call_sid, kind)
    try:
        await call.connect()
        await call.wait_greeting(timeout_s=timeout_s, settle_s=0.8)
        if kind == "silent":
            await call.wait_until(lambda: call.closed_by_server, timeout_s + 60, "the gateway hanging up")
            return placed
        script = lines[:1] if kind == "drop" else lines
        for line in script:
            placed.lines_spoken += 1
            await _speak_and_wait(call, line, timeout_s)
        if kind == "drop":
            placed.lines_spoken += 1
            before = len(call.result.marks_received)
            await _say(call, lines[-1])
            await call.wait_until(
                lambda: any(m.startswith("reply") for m in call.result.marks_received[before:]),
                timeout_s,
                "a reply to hang up on",
            )
            await asyncio.sleep(0.5)
            await call.close()  # the caller hangs up while the agent talks: no `stop`
            return placed
        placed.lines_spoken += 1
        if await _barge_in(call, lines[0], barge, timeout_s, CallOutcome(n, url)):
            placed.lines_spoken += 1  # the barge-in line is a caller turn too
    except Exception as exc:  # a failed call is a finding, not a crash of the soak
        placed.error = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await call.hang_up()
    return placed


async def _caller(
    url: str, index: int, deadline: float, lines: list[Line], barge: Line, out: list[Placed], seq: Iterator[int]
) -> None:
    await asyncio.sleep(index * 3.0)  # stagger: callers do not speak in lock-step
    while time.monotonic() < deadline:
        out.append(await _one_call(url, next(seq), lines, barge, timeout_s=120.0))


def ledger(placed: list[Placed], hooks: list[dict[str, Any]]) -> dict[str, Any]:
    """Answered turns, completed calls and delivered webhooks from the ``call.completed`` bodies."""
    completed = {b["call_sid"]: b for b in hooks if b.get("event") == "call.completed"}
    spoken = answered = 0
    unanswered: list[dict[str, Any]] = []
    for p in placed:
        spoken += p.lines_spoken
        body = completed.get(p.call_sid)
        turns = body["turns"] if body else []
        got = 0
        for i, turn in enumerate(turns):
            if turn.get("role") != "user" or turn.get("backchannel") or turn.get("unanswered"):
                continue
            nxt = next((t for t in turns[i + 1 :] if t.get("role") == "assistant" or t.get("role") == "user"), None)
            if nxt is not None and nxt.get("role") == "assistant" and str(nxt.get("reply_id", "")).startswith("reply"):
                got += 1 if str(nxt.get("text") or nxt.get("full_text") or "").strip() else 0
        got = min(got, p.lines_spoken)
        answered += got
        if got < p.lines_spoken:  # kept whole, to read what happened
            unanswered.append({"placed": asdict(p), "turns": turns, "status": body.get("status") if body else None})
    return {
        "calls_placed": len(placed),
        "calls_completed": sum(1 for p in placed if completed.get(p.call_sid, {}).get("status") == "completed"),
        "webhooks_delivered": sum(1 for p in placed if p.call_sid in completed),
        "caller_turns": spoken,
        "answered_turns": answered,
        "answered_ratio": round(answered / spoken, 4) if spoken else 1.0,
        "caller_errors": [p.error for p in placed if p.error],
        "calls_with_unanswered_turns": unanswered,
        "extraction": {
            s: sum(1 for b in completed.values() if b.get("extraction_status") == s)
            for s in ("done", "failed", "skipped")
        },
    }


async def _webhooks(stack: Stack) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        resp = await client.get(f"http://127.0.0.1:{stack.ports.webhook}/webhooks", timeout=10)
        resp.raise_for_status()
        return list(resp.json())


async def _settle(stack: Stack, placed: list[Placed], stall_s: float) -> tuple[list[dict[str, Any]], float]:
    """Wait until every placed call's ``call.completed`` arrived, or none arrived for ``stall_s``.

    The events wait for the post-call extraction, which yields to live calls on the one-slot CPU
    LLM (``GATEWAY_EXTRACTION_DEFER_S``): under continuous load they queue and go out after it.

    Returns:
        The webhook bodies and how long the wait took, seconds.
    """
    t0 = last_progress = time.monotonic()
    seen = -1
    while True:
        hooks = await _webhooks(stack)
        got = {b.get("call_sid") for b in hooks if b.get("event") == "call.completed"}
        if all(p.call_sid in got for p in placed) or time.monotonic() - last_progress > stall_s:
            return hooks, time.monotonic() - t0
        if len(got) != seen:
            seen, last_progress = len(got), time.monotonic()
        await asyncio.sleep(2.0)


async def soak(stack: Stack, calls: int, minutes: float, idle_s: float) -> dict[str, Any]:
    """Run the soak on a started stack; returns the report (see the module doc)."""
    lines = await asyncio.to_thread(synthesize_lines, f"http://127.0.0.1:{stack.ports.tts}", SCRIPT)
    barge = (await asyncio.to_thread(synthesize_lines, f"http://127.0.0.1:{stack.ports.tts}", [BARGE_IN_LINE]))[0]
    warm = await _one_call(stack.gateway_url, 0, lines[:1], barge, timeout_s=180.0)
    snaps = [snapshot(stack, "start")]
    placed: list[Placed] = []
    t0 = time.monotonic()
    deadline = t0 + minutes * 60
    seq = itertools.count()  # call number across callers: every 5th drops, every 7th is silent
    rss_series: list[dict[str, Any]] = []

    async def sample() -> None:
        while True:
            await asyncio.sleep(60)
            snap = snapshot(stack, "load")
            rss_series.append({"minute": len(rss_series) + 1, "calls": len(placed), "rss_mib": snap.rss_mib})

    sampler = asyncio.create_task(sample())
    await asyncio.gather(*(_caller(stack.gateway_url, i, deadline, lines, barge, placed, seq) for i in range(calls)))
    sampler.cancel()
    load_s = time.monotonic() - t0
    snaps.append(snapshot(stack, "end"))
    hooks, settle_s = await _settle(stack, placed, stall_s=180.0)
    await asyncio.sleep(idle_s)
    snaps.append(snapshot(stack, "idle"))
    report = ledger(placed, hooks)
    report.update(
        concurrent_calls=calls,
        minutes=minutes,
        load_seconds=round(load_s, 1),
        webhooks_settled_seconds=round(settle_s, 1),
        rss_per_minute=rss_series,
        warm_up_call=asdict(warm),
        kinds={k: sum(1 for p in placed if p.kind == k) for k in ("script", "drop", "silent")},
        snapshots=[asdict(s) for s in snaps],
    )
    return report


def _print(report: dict[str, Any]) -> None:
    rows = [
        ("concurrent calls × minutes", f"{report['concurrent_calls']} × {report['minutes']}"),
        ("calls placed (script/drop/silent)", f"{report['calls_placed']} {report['kinds']}"),
        ("caller turns answered", f"{report['answered_turns']}/{report['caller_turns']}"),
        ("answered-turn ratio", f"{report['answered_ratio']:.1%}"),
        ("calls completed", f"{report['calls_completed']}/{report['calls_placed']}"),
        ("call.completed webhooks", f"{report['webhooks_delivered']}/{report['calls_placed']}"),
        ("extractions done/failed/skipped", "/".join(str(v) for v in report["extraction"].values())),
        ("webhooks settled after the load", f"{report['webhooks_settled_seconds']:.0f} s"),
    ]
    snaps = report["snapshots"]
    for name in snaps[0]["rss_mib"]:
        rss = " → ".join(f"{s['rss_mib'].get(name, 0):.0f}" for s in snaps)
        fds = " → ".join(str(s["fds"].get(name, 0)) for s in snaps)
        rows.append((f"{name}: RSS MiB, fds (start → end → idle)", f"{rss};  {fds}"))
    width = max(len(r[0]) for r in rows)
    log.info("soak result\n%s", "\n".join(f"{k:<{width}}  {v}" for k, v in rows))


def main() -> int:
    """``python -m bench.soak --calls N --minutes M``."""
    from shared.logs import setup_logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2, help="concurrent callers")
    parser.add_argument("--minutes", type=float, default=5.0, help="how long the callers keep calling")
    parser.add_argument("--idle-s", type=float, default=60.0, help="idle time before the last snapshot")
    parser.add_argument("--json", type=Path, default=PROJECT_ROOT / "out" / "soak.json")
    args = parser.parse_args()
    setup_logging("soak")
    logs = PROJECT_ROOT / "out" / "soak"
    env = {
        "GATEWAY_DATA_DIR": str(logs / "data"),
        "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{logs / 'data' / 'soak.db'}",
        "GATEWAY_REPROMPT_AFTER_S": "6",
        "GATEWAY_HANGUP_AFTER_S": "12",
    }
    (logs / "data").mkdir(parents=True, exist_ok=True)
    (logs / "data" / "soak.db").unlink(missing_ok=True)
    with Stack(Ports.free(), reuse=False, log_dir=logs, env=env) as stack:
        report = asyncio.run(soak(stack, args.calls, args.minutes, args.idle_s))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    _print(report)
    ok = (
        report["answered_turns"] == report["caller_turns"]
        and report["calls_completed"] == report["calls_placed"]
        and report["webhooks_delivered"] == report["calls_placed"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
