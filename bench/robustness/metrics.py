"""What one evaluated call measured, from the caller's side, the gateway's ears and its record.

Ticks are 20 ms of call time (the media clock); the gateway's stream time is ms of caller audio,
so tick = ms / 20.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.robustness.transport import CallLog

NEAR_TICKS = 15
"""A speech start within 300 ms of the caller's words belongs to them."""
BARGE_IN_WINDOW_TICKS = 150
"""A ``clear`` within 3 s of an interruption's first word answers it."""
SILENT_TICKS = 15
"""The line is silent once 300 ms pass with no agent audio."""


@dataclass
class CallMetrics:
    """Counts and per-event timings of one call (summed/pooled per condition by :func:`pool`)."""

    speech_starts: int = 0
    false_starts: int = 0
    barge_ins: int = 0
    false_barge_ins: int = 0
    interruptions: int = 0
    missed_barge_ins: int = 0
    barge_in_silence_ms: list[float] = field(default_factory=list)
    pauses: int = 0
    resumed_pauses: int = 0
    resumed_gap_ms: list[float] = field(default_factory=list)
    """How long the line was silent before a resumed (false) pause went on, ms."""
    noise_turns: int = 0
    noise_transcripts: int = 0
    """Transcriptions with text of audio from a noise-only turn."""
    noise_replies: int = 0
    """Replies the agent started to a noise-only turn."""
    dropped_hallucinations: int = 0
    endpointing_ms: list[float] = field(default_factory=list)
    voice_to_voice_ms: list[float] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    hyps: list[str] = field(default_factory=list)
    timeouts: list[str] = field(default_factory=list)


def _near(tick: int, spans: list[tuple[int, int]], before: int = NEAR_TICKS, after: int = NEAR_TICKS) -> bool:
    return any(s - before <= tick <= e + after for s, e in spans)


def measure(
    log: CallLog,
    played: list[tuple[int, str]],
    clears: list[int],
    listen_events: list[tuple[str, int]],
    stt_calls: list[tuple[int, str]],
    llm_calls: list[tuple[int, str]],
    turns: list[dict[str, Any]],
    extra: dict[str, int] | None = None,
) -> CallMetrics:
    """One call's :class:`CallMetrics`.

    Args:
        log: the caller's side (utterances, quiet windows, pauses/resumes).
        played: (tick, reply id) of each agent frame the caller's loudspeaker played.
        clears: ticks of the gateway's ``clear`` s.
        listen_events: (event name, stream ms) of every event the gateway's listener emitted.
        stt_calls: (tick, text) of each transcription; llm_calls: (tick, caller text) of each reply asked for.
        turns: the call's record (the summary's turns).
        extra: counters read from the gateway (``dropped_hallucinations``).
    """
    m = CallMetrics(timeouts=list(log.timeouts))
    spans = [(u.onset_tick, u.end_tick) for u in log.utterances]
    starts = [ms // 20 for name, ms in listen_events if name == "SpeechStarted"]
    m.speech_starts = len(starts)
    m.false_starts = sum(not _near(t, spans, before=NEAR_TICKS, after=25) for t in starts)
    played_ticks = np.array(sorted(t for t, _ in played)) if played else np.zeros(0, dtype=int)
    over_agent = lambda u: bool(((played_ticks >= u.onset_tick - 5) & (played_ticks <= u.onset_tick)).any())  # noqa: E731
    interruptions = [u for u in log.utterances if u.role == "interruption" and over_agent(u)]
    m.interruptions = len(interruptions)
    true_clears: set[int] = set()
    for u in interruptions:
        answered = [c for c in clears if u.onset_tick <= c <= u.onset_tick + BARGE_IN_WINDOW_TICKS]
        if not answered:
            m.missed_barge_ins += 1
            continue
        true_clears.add(answered[0])
        k = u.onset_tick
        while ((played_ticks >= k) & (played_ticks < k + SILENT_TICKS)).any():
            k = int(played_ticks[(played_ticks >= k) & (played_ticks < k + SILENT_TICKS)].max()) + 1
        m.barge_in_silence_ms.append((k - u.onset_tick) * 20.0)
    m.barge_ins = len(clears)
    m.false_barge_ins = sum(c not in true_clears for c in clears)
    m.pauses = len(log.pauses)
    for p in log.pauses:
        resumed = [r for r in log.resumes if r >= p]
        if resumed and not [c for c in clears if p <= c <= resumed[0]]:
            m.resumed_pauses += 1
            gap = played_ticks[(played_ticks >= p) & (played_ticks <= resumed[0] + 10)]
            m.resumed_gap_ms.append(float(np.diff(gap).max() - 1) * 20.0 if gap.size > 1 else 0.0)
    windows = [(a, b + 5) for a, b in log.quiet]  # requests made while the caller said nothing
    m.noise_turns = len(log.quiet)
    m.noise_transcripts = sum(bool(text.strip()) and _near(t, windows, 0, 0) for t, text in stt_calls)
    m.noise_replies = sum(_near(t, windows, 0, 0) for t, _ in llm_calls)
    m.dropped_hallucinations = (extra or {}).get("dropped_hallucinations", 0)
    for turn in turns:
        lat = turn.get("latency_ms") or {}
        if turn.get("role") == "assistant" and str(turn.get("reply_id", "")).startswith("reply"):
            if "endpointing_ms" in lat:
                m.endpointing_ms.append(float(lat["endpointing_ms"]))
            if "voice_to_voice_ms" in lat:
                m.voice_to_voice_ms.append(float(lat["voice_to_voice_ms"]))
    m.refs = [u.text for u in log.utterances if u.role in ("turn", "interruption")]
    m.hyps = [
        str(t.get("raw_text", t.get("text", "")))
        for t in turns
        if t.get("role") == "user" and not t.get("backchannel") and str(t.get("text", "")).strip()
    ]
    return m


def pool(calls: list[CallMetrics]) -> dict[str, Any]:
    """One condition's row: counts summed, timings pooled (p50/p95), WER over all callers' words."""
    import jiwer

    normalise = jiwer.Compose(
        [
            jiwer.ToLowerCase(),
            jiwer.RemovePunctuation(),
            jiwer.RemoveMultipleSpaces(),
            jiwer.Strip(),
            jiwer.ReduceToListOfListOfWords(),
        ]
    )

    def pct(values: list[float], q: float) -> float | None:
        return float(np.percentile(values, q)) if values else None

    refs = " ".join(r for c in calls for r in c.refs)
    hyps = " ".join(h for c in calls for h in c.hyps)
    wer = jiwer.wer(refs, hyps or "", reference_transform=normalise, hypothesis_transform=normalise)
    counts = (
        "speech_starts false_starts barge_ins false_barge_ins interruptions missed_barge_ins pauses "
        "resumed_pauses noise_turns noise_transcripts noise_replies dropped_hallucinations"
    ).split()
    row: dict[str, Any] = {k: sum(getattr(c, k) for c in calls) for k in counts}
    silence = [v for c in calls for v in c.barge_in_silence_ms]
    gaps = [v for c in calls for v in c.resumed_gap_ms]
    eot = [v for c in calls for v in c.endpointing_ms]
    v2v = [v for c in calls for v in c.voice_to_voice_ms]
    row.update(
        calls=len(calls),
        wer=round(float(wer), 3),
        barge_in_silence_p50_ms=pct(silence, 50),
        barge_in_silence_ms=silence,
        resumed_gap_p50_ms=pct(gaps, 50),
        endpointing_p50_ms=pct(eot, 50),
        endpointing_p95_ms=pct(eot, 95),
        voice_to_voice_p50_ms=pct(v2v, 50),
        timeouts=[t for c in calls for t in c.timeouts],
        refs=[r for c in calls for r in c.refs],
        hyps=[h for c in calls for h in c.hyps],
    )
    return row
