"""Load generator for ``make bench``: many simulated Twilio callers at once, each with a script.

Every caller is a :class:`tools.twilio_sim.SimulatedCall` (the Media Streams protocol in real
time: 20 ms μ-law frames, marks echoed after playout, ``clear`` honoured). A caller waits for the
greeting, then speaks each line of :data:`bench.script.SCRIPT` after the agent's previous reply has played and a
short human pause; on its last line it **barges in**: it starts talking one second into the
agent's reply, and the time from its first word to the gateway's ``clear`` is the barge-in
reaction time. Calls start spread over a ramp so they do not speak in lock-step.

Callers are spread over worker processes (one asyncio loop each), so the load generator itself
does not become the bottleneck at hundreds of calls; calls are spread over the gateway processes
round-robin, as a load balancer would.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from bench.meters import pin
from shared.audio import FRAME_MS, TELEPHONY_RATE_HZ, resample, split_frames, ulaw_encode
from tools.twilio_sim import SimulatedCall, fetch_call, speech_end_s

CALLER_VOICE = "am_michael"
"""Kokoro voice of the callers (the agent speaks with another one)."""
BARGE_IN_AFTER_S = 1.0
"""The caller interrupts this long after the agent's reply started playing."""


@dataclass
class Line:
    """One caller utterance: 20 ms μ-law frames at 8 kHz and where its speech ends, in seconds
    (the last 20 ms frame above −40 dBFS; trailing silence follows)."""

    frames: list[bytes]
    seconds: float


def synthesize_lines(tts_url: str, texts: list[str], voice: str = CALLER_VOICE) -> list[Line]:
    """Caller audio for ``texts`` via the TTS service (24 kHz PCM16 → 8 kHz μ-law frames).

    Raises:
        httpx.HTTPStatusError: the TTS service refused a request.
    """
    lines = []
    for text in texts:
        resp = httpx.post(
            f"{tts_url}/v1/audio/speech",
            json={"input": text, "voice": voice, "response_format": "pcm"},
            timeout=300,
        )
        resp.raise_for_status()
        pcm = resample(np.frombuffer(resp.content, dtype="<i2").astype(np.int16), 24000, TELEPHONY_RATE_HZ)
        lines.append(Line(split_frames(ulaw_encode(pcm)), speech_end_s(pcm)))
    return lines


@dataclass
class CallOutcome:
    """What one simulated call measured (JSON-friendly)."""

    index: int
    gateway_url: str
    call_sid: str = ""
    started_at: float = 0.0
    """Unix time the call connected."""
    duration_s: float = 0.0
    caller_v2v_ms: list[float] = field(default_factory=list)
    """End of caller speech → first agent audio frame, as the caller heard it, per answered turn."""
    barge_in_ms: float | None = None
    """Caller's first barge-in frame → ``clear`` from the gateway (stream time)."""
    barge_in_silence_ms: float | None = None
    """Caller's first barge-in frame → the agent's audio stops playing at the caller's side (the gateway
    pauses it at the speech's onset, then clears it): how long the agent talks over the caller."""
    error: str | None = None
    turns: list[dict[str, Any]] = field(default_factory=list)
    """The gateway's own records of the call's turns (``GET /calls/{sid}``), with ``latency_ms``."""


def _replies_done(call: SimulatedCall) -> int:
    return sum(m.endswith(":end") for m in call.result.marks_received)


async def _say(call: SimulatedCall, line: Line) -> None:
    """Speak ``line`` and return when its speech has been sent; the next agent audio after that
    counts for the caller-side voice-to-voice latency."""
    call.result.reply_first_audio_at = None
    call.result.caller_speech_end_at = time.monotonic() + line.seconds
    call.say(line.frames)
    await asyncio.sleep(line.seconds)


async def _speak_and_wait(call: SimulatedCall, line: Line, timeout_s: float) -> float | None:
    """Say ``line`` on a quiet line and wait for the agent's reply to finish playing."""
    before = _replies_done(call)
    await _say(call, line)
    await call.wait_until(lambda: _replies_done(call) > before, timeout_s, "the reply")
    await call.wait_greeting(timeout_s=timeout_s, settle_s=0.8)  # reply played, a human pause
    return call.result.voice_to_voice_ms


async def run_call(
    index: int, gateway_url: str, lines: list[Line], barge: Line | None, delay_s: float, timeout_s: float
) -> CallOutcome:
    """One caller: greeting, every line in turn, then an optional barge-in; never raises."""
    out = CallOutcome(index, gateway_url)
    await asyncio.sleep(delay_s)
    call = SimulatedCall(gateway_url)
    t0 = time.monotonic()
    try:
        out.started_at = time.time()
        await call.connect()
        out.call_sid = call.call_sid
        await call.wait_greeting(timeout_s=timeout_s, settle_s=0.8)
        for line in lines:
            v2v = await _speak_and_wait(call, line, timeout_s)
            if v2v is not None:
                out.caller_v2v_ms.append(v2v)
        if barge is not None and lines:
            await _barge_in(call, lines[0], barge, timeout_s, out)
    except Exception as exc:  # a failed call is a measurement, not a crash of the benchmark
        out.error = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await call.hang_up()
        out.duration_s = time.monotonic() - t0
    if out.call_sid:
        out.turns = await _fetch_turns(gateway_url, out.call_sid)
    return out


async def _barge_in(call: SimulatedCall, ask: Line, barge: Line, timeout_s: float, out: CallOutcome) -> bool:
    """Ask again, interrupt the reply ``BARGE_IN_AFTER_S`` into it, wait for the new answer.

    Returns whether the barge-in line was spoken (not when the reply was too short to interrupt).
    """
    before_clears = call.result.clears
    asked = _replies_done(call)
    await _say(call, ask)
    await call.wait_until(lambda: call.result.reply_first_audio_at is not None, timeout_s, "the reply to barge into")
    await asyncio.sleep(BARGE_IN_AFTER_S)
    if call.agent_idle_for() > 0:
        return False  # the reply was too short to interrupt: no barge-in measured for this call
    start_chunk = call.say(barge.frames)
    first_word_at = time.monotonic() + (start_chunk - call.chunk - 1) * FRAME_MS / 1000 + onset_s(barge)
    silence = asyncio.ensure_future(_line_silent_after(call, first_word_at))

    def cleared() -> bool:  # an earlier clear (the agent cut off mid-question) does not count
        return any(c >= start_chunk for c in call.result.clear_chunks[before_clears:])

    # The reply may finish before the caller has said enough to interrupt it (a slow, loaded host
    # sends it late and short): then there is nothing to barge into and nothing is measured.
    await call.wait_until(lambda: cleared() or _replies_done(call) > asked, timeout_s, "clear after barge-in")
    if cleared():
        first = next(c for c in call.result.clear_chunks[before_clears:] if c >= start_chunk)
        out.barge_in_ms = (first - start_chunk + 1) * FRAME_MS
        with contextlib.suppress(TimeoutError):
            out.barge_in_silence_ms = await asyncio.wait_for(silence, 5.0)
    silence.cancel()
    before = _replies_done(call)
    await asyncio.sleep(barge.seconds)
    await call.wait_until(lambda: _replies_done(call) > before, timeout_s, "the reply after barge-in")
    return True


def onset_s(line: Line) -> float:
    """Where speech starts in ``line`` (its first 20 ms frame above −40 dBFS), seconds."""
    from shared.audio import ulaw_decode

    for i, frame in enumerate(line.frames):
        pcm = ulaw_decode(frame).astype(np.float64) / 32768.0
        if np.sqrt(np.mean(pcm**2)) > 0.01:
            return i * FRAME_MS / 1000
    return 0.0


async def _line_silent_after(call: SimulatedCall, first_word_at: float, quiet_s: float = 0.3) -> float:
    """Wait until the agent's audio has been silent ``quiet_s`` at the caller's side after
    ``first_word_at`` (monotonic); ms from the first word to when it fell silent."""
    while True:
        await asyncio.sleep(0.02)
        now = time.monotonic()
        idle = call.agent_idle_for()
        if now >= first_word_at and idle >= quiet_s:
            return max(0.0, (now - idle - first_word_at) * 1000)


async def _fetch_turns(gateway_url: str, call_sid: str) -> list[dict[str, Any]]:
    """The gateway's turn records of a finished call; [] if it cannot be read."""
    try:
        return list((await fetch_call(gateway_url, call_sid, wait_ended_s=15.0)).get("turns", []))
    except (httpx.HTTPError, ValueError):
        return []


async def _run_group(
    jobs: list[tuple[int, str, float]], lines: list[Line], barge: Line | None, timeout_s: float
) -> list[CallOutcome]:
    return list(await asyncio.gather(*(run_call(i, url, lines, barge, delay, timeout_s) for i, url, delay in jobs)))


def _worker(
    jobs: list[tuple[int, str, float]], lines: list[Line], barge: Line | None, timeout_s: float
) -> list[CallOutcome]:
    return asyncio.run(_run_group(jobs, lines, barge, timeout_s))


def run_load(
    gateway_urls: list[str],
    calls: int,
    lines: list[Line],
    barge: Line | None,
    ramp_s: float,
    processes: int = 1,
    timeout_s: float = 90.0,
    seed: int = 0,
    cpus: set[int] | None = None,
) -> list[CallOutcome]:
    """Place ``calls`` concurrent calls, start times spread uniformly over ``ramp_s`` seconds.

    Args:
        gateway_urls: gateway processes; call i goes to ``gateway_urls[i % len]``.
        processes: worker processes running the callers (≥ 1; 1 runs them in this process).
        timeout_s: how long a caller waits for a greeting or a reply before giving up.
        cpus: CPU cores the worker processes are pinned to (``os.sched_setaffinity``), so the
            load generator does not compete with the stack; ``None``: no pinning.

    Returns one :class:`CallOutcome` per call, in index order.
    """
    rng = random.Random(seed)
    jobs = [(i, gateway_urls[i % len(gateway_urls)], rng.uniform(0, ramp_s)) for i in range(calls)]
    if processes <= 1 and cpus is None:
        return _worker(jobs, lines, barge, timeout_s)
    processes = max(1, processes)
    groups = [jobs[p::processes] for p in range(processes) if jobs[p::processes]]
    with ProcessPoolExecutor(len(groups), initializer=pin, initargs=(cpus,)) as pool:
        n = len(groups)
        parts = pool.map(_worker, groups, [lines] * n, [barge] * n, [timeout_s] * n)
        results = [r for part in parts for r in part]
    return sorted(results, key=lambda r: r.index)
