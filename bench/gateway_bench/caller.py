"""Simulated Twilio callers for ``make bench-gateway``: the Media Streams protocol, timed per frame.

Each caller does what Twilio and a person do (as :class:`tools.twilio_sim.SimulatedCall`, but lean,
because up to a hundred of them share a process and the box): POST the voice webhook, open the
stream, ``connected`` + ``start``, one 20 ms μ-law ``media`` frame every 20 ms on an absolute
schedule (real speech from ``models/audio`` while it talks, silence otherwise), echo each ``mark``
once the audio before it has played, honour ``clear``, ``stop`` at the end. The person: waits for
the greeting, speaks a recording, waits until the agent's reply has played, pauses 0.4–1.2 s,
speaks the next one; every ``barge_every``-th turn it talks over the reply one second into it.

What it measures, only inside the steady window: each agent frame's deviation from its ideal
pacing schedule (per reply burst, :func:`bench.gateway_bench.measure.burst_deviations`), the
realtime ratio of whole bursts, how late its own 20 ms clock sent (load-generator or back-pressure
lag), and end of speech → first agent frame. Times are ``time.monotonic()`` (system-wide on Linux,
so the orchestrator's window applies in every worker process).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets

from bench.gateway_bench.measure import FRAME_S, burst_deviations
from shared import twilio_media as tw
from tools.twilio_sim import SILENCE_FRAME, caller_frames


@dataclass
class Utterance:
    """One caller recording as 20 ms μ-law frames (8 kHz) and the frame where its speech ends."""

    name: str
    frames: list[bytes]
    speech_end_frame: int


def load_utterances(paths: list[Path]) -> list[Utterance]:
    """Read the recordings (any format and rate :func:`shared.audio.read_audio` takes)."""
    out = []
    for path in paths:
        frames, end_s = caller_frames(path)
        out.append(Utterance(path.stem, frames, max(1, round(end_s / FRAME_S))))
    return out


@dataclass
class CallPlan:
    """One caller's schedule (monotonic seconds) and manners."""

    index: int
    base_url: str
    start_at: float
    stop_at: float
    window: tuple[float, float]
    lead_s: float = 0.1
    """The gateway's playback lead (``GATEWAY_PLAYBACK_LEAD_MS`` / 1000), for the pacing schedule."""
    seed: int = 0
    barge_every: int = 3
    reply_timeout_s: float = 30.0


@dataclass
class CallStats:
    """What one caller observed (the lists hold window samples only)."""

    index: int
    call_sid: str = ""
    connected_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    lines_spoken: int = 0
    barge_ins: int = 0
    clears: int = 0
    replies: int = 0
    """Reply ends (``<reply>:end`` marks) received, greeting included."""
    reply_timeouts: int = 0
    frames_in_window: int = 0
    deviations_s: list[float] = field(default_factory=list)
    ideal_span_s: float = 0.0
    actual_span_s: float = 0.0
    send_lag_s: list[float] = field(default_factory=list)
    caller_v2v_ms: list[float] = field(default_factory=list)


class BenchCaller:
    """One call; :meth:`run` never raises (a failure is recorded in :attr:`stats`)."""

    def __init__(self, plan: CallPlan, utterances: list[Utterance], http: httpx.AsyncClient) -> None:
        self.plan = plan
        self.utterances = utterances
        self.http = http
        self.rng = random.Random(plan.seed)
        self.stats = CallStats(plan.index)
        self.call_sid = "CA" + uuid.uuid4().hex
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.queue: deque[bytes] = deque()
        self.chunk = 0
        self.end_chunk: int | None = None
        self.speech_end_at: float | None = None
        self.playout_end = 0.0
        self.pending_marks: list[tuple[float, str]] = []
        self.burst: list[float] = []
        self.agent_frames = 0
        self.closed = asyncio.Event()

    # ---- the line ----------------------------------------------------------------------------
    def _in_window(self, t: float) -> bool:
        return self.plan.window[0] <= t <= self.plan.window[1]

    def _close_burst(self) -> None:
        arr, self.burst = self.burst, []
        if not arr:
            return
        for t, dev in zip(arr, burst_deviations(arr, self.plan.lead_s), strict=True):
            if self._in_window(t):
                self.stats.deviations_s.append(dev)
        ideal = (len(arr) - 1) * FRAME_S - self.plan.lead_s
        if ideal > 0 and self._in_window(arr[0]) and self._in_window(arr[-1]):
            self.stats.ideal_span_s += ideal
            self.stats.actual_span_s += arr[-1] - arr[0]

    async def _receive(self, ws: websockets.ClientConnection) -> None:
        try:
            async for raw in ws:
                now = time.monotonic()
                msg = json.loads(raw)
                kind = msg.get("event")
                if kind == "media":
                    self.burst.append(now)
                    self.agent_frames += 1
                    self.playout_end = max(self.playout_end, now) + FRAME_S
                    if self._in_window(now):
                        self.stats.frames_in_window += 1
                    if self.speech_end_at is not None and now >= self.speech_end_at:
                        if self._in_window(self.speech_end_at):
                            self.stats.caller_v2v_ms.append((now - self.speech_end_at) * 1000)
                        self.speech_end_at = None
                elif kind == "mark":
                    name = str(msg["mark"]["name"])
                    self.pending_marks.append((max(self.playout_end, now), name))
                    if name.endswith(":end"):
                        self.stats.replies += 1
                        self._close_burst()
                elif kind == "clear":
                    self.stats.clears += 1
                    self._close_burst()
                    self.playout_end = now
                    self.pending_marks = [(now, name) for _, name in self.pending_marks]
        finally:
            self.closed.set()

    async def _clock(self, ws: websockets.ClientConnection) -> None:
        """One inbound frame every 20 ms on an absolute schedule; due mark echoes after it."""
        t0 = time.monotonic()
        seq = 1
        while True:
            due = t0 + self.chunk * FRAME_S
            now = time.monotonic()
            if self._in_window(now):
                self.stats.send_lag_s.append(max(0.0, now - due))
            payload = self.queue.popleft() if self.queue else SILENCE_FRAME
            self.chunk += 1
            seq += 1
            media = tw.Media(self.stream_sid, payload, self.chunk, self.chunk * 20, "inbound", seq)
            await ws.send(tw.serialize_event(media))
            if self.end_chunk is not None and self.chunk >= self.end_chunk:
                self.speech_end_at, self.end_chunk = time.monotonic(), None
            now = time.monotonic()
            while self.pending_marks and self.pending_marks[0][0] <= now:
                _, name = self.pending_marks.pop(0)
                seq += 1
                await ws.send(tw.serialize_event(tw.MarkEcho(self.stream_sid, name, sequence_number=seq)))
            delay = t0 + self.chunk * FRAME_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    # ---- the person --------------------------------------------------------------------------
    def _agent_quiet(self) -> bool:
        return time.monotonic() >= self.playout_end and not self.pending_marks

    async def _wait(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if self.closed.is_set():
                raise ConnectionError("the gateway closed the stream")
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def _say(self, utt: Utterance) -> None:
        """Queue a recording and return once all of it has been sent."""
        self.speech_end_at = None
        self.end_chunk = self.chunk + len(self.queue) + utt.speech_end_frame
        self.queue.extend(utt.frames)
        self.stats.lines_spoken += 1
        await asyncio.sleep(len(utt.frames) * FRAME_S)
        await self._wait(lambda: not self.queue, 5.0)

    async def _reply_played(self, replies_before: int) -> None:
        timeout = self.plan.reply_timeout_s
        ok = await self._wait(lambda: self.stats.replies > replies_before and self._agent_quiet(), timeout)
        if not ok:
            self.stats.reply_timeouts += 1

    async def _script(self) -> None:
        await self._reply_played(0)  # the greeting
        turn = self.plan.index
        while True:
            await asyncio.sleep(self.rng.uniform(0.4, 1.2))
            utt = self.utterances[turn % len(self.utterances)]
            turn += 1
            frames_before, before = self.agent_frames, self.stats.replies
            await self._say(utt)
            barge = self.plan.barge_every > 0 and self.stats.lines_spoken % self.plan.barge_every == 0
            started = lambda n=frames_before: self.agent_frames > n  # noqa: E731
            if barge and await self._wait(started, self.plan.reply_timeout_s):
                await asyncio.sleep(1.0)
                if not self._agent_quiet():  # still talking: talk over it
                    self.stats.barge_ins += 1
                    before = self.stats.replies
                    await self._say(self.utterances[turn % len(self.utterances)])
                    turn += 1
            await self._reply_played(before)

    async def _twiml(self) -> tuple[str, dict[str, str]]:
        form = {"CallSid": self.call_sid, "AccountSid": "AC" + uuid.uuid4().hex, "From": "+15550100001"}
        form.update(To="+15550100002", Direction="inbound", CallStatus="ringing")
        resp = await self.http.post(self.plan.base_url + "/twilio/voice", data=form, timeout=30)
        resp.raise_for_status()
        stream = ET.fromstring(resp.text).find("./Connect/Stream")
        if stream is None:
            raise RuntimeError(f"TwiML has no <Connect><Stream>: {resp.text[:200]}")
        params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
        return stream.get("url", "").replace("wss://", "ws://"), params

    async def run(self) -> CallStats:
        """Place the call at ``start_at``, talk until ``stop_at``, hang up; returns the stats."""
        plan = self.plan
        await asyncio.sleep(max(0.0, plan.start_at - time.monotonic()))
        ws: websockets.ClientConnection | None = None
        tasks: list[asyncio.Task[None]] = []
        try:
            url, params = await self._twiml()
            ws = await websockets.connect(url, max_size=2**22, compression=None, open_timeout=30)
            await ws.send(tw.serialize_event(tw.Connected()))
            start = tw.Start(self.stream_sid, self.call_sid, "AC0", ("inbound",), params, sequence_number=1)
            await ws.send(tw.serialize_event(start))
            self.stats.call_sid, self.stats.connected_at = self.call_sid, time.monotonic()
            tasks = [asyncio.create_task(self._clock(ws)), asyncio.create_task(self._receive(ws))]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, plan.stop_at - time.monotonic())):
                    await self._script()
        except Exception as exc:  # a failed call is a measurement
            self.stats.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.stats.ended_at = time.monotonic()
            self._close_burst()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                    await task
            if ws is not None:
                with contextlib.suppress(Exception):
                    stop = tw.Stop(self.stream_sid, self.call_sid, "AC0")
                    await ws.send(tw.serialize_event(stop))
                    await ws.close()
        return self.stats


async def run_callers(plans: list[CallPlan], utterances: list[Utterance]) -> list[CallStats]:
    """Run every plan concurrently in this process's loop."""
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(limits=limits) as http:
        return list(await asyncio.gather(*(BenchCaller(p, utterances, http).run() for p in plans)))


def worker(plans: list[CallPlan], utterances: list[Utterance], results: Any) -> None:
    """Entry point of one load-generator process: run the plans, put the stats on ``results``
    (a ``multiprocessing.Queue``)."""
    stats = asyncio.run(run_callers(plans, utterances))
    results.put(stats)
