"""Prometheus metrics of the gateway (names follow Prometheus conventions: units, ``_total``)."""

from __future__ import annotations

import asyncio
import os

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import MULTIPROC_ENV

if os.environ.get(MULTIPROC_ENV):  # several workers (GATEWAY_WORKERS): the values' files go there
    os.makedirs(os.environ[MULTIPROC_ENV], exist_ok=True)

STAGES = ("endpointing", "stt", "llm_ttft", "tts_first_audio", "voice_to_voice")

ACTIVE_CALLS = Gauge(
    "gateway_active_calls", "Calls with an open media stream", multiprocess_mode="livesum"
)  # several workers: the live sum
CALLS = Counter("gateway_calls_total", "Calls started")
RESUMES = Counter(
    "gateway_calls_resumed_total", "Calls resumed here after their stream was lost (another gateway's crash)"
)
STAGE_LATENCY = Histogram(
    "gateway_stage_latency_seconds",
    "Per-turn latency by pipeline stage",
    ["stage"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0),
)
BARGE_INS = Counter("gateway_barge_ins_total", "Caller interruptions of agent speech")
BARGE_IN_PAUSES = Counter(
    "gateway_barge_in_pauses_total",
    "Agent audio paused at caller speech, by outcome (interrupted, or resumed: a backchannel, echo or noise)",
    ["outcome"],
)
DROPPED_TRANSCRIPTS = Counter(
    "gateway_dropped_transcripts_total",
    "Transcripts dropped as Whisper's hallucinations on noise, by reason (gateway/conversation/hallucinations.py)",
    ["reason"],
)
ERRORS = Counter("gateway_errors_total", "Errors by stage", ["stage"])
UPSTREAM_RETRIES = Counter(
    "gateway_upstream_retries_total", "Requests sent again after a dropped connection or a 5xx", ["service"]
)
WEBHOOKS = Counter("gateway_webhook_deliveries_total", "Webhook delivery attempts by outcome", ["outcome"])
MALFORMED = Counter("gateway_malformed_frames_total", "Twilio frames skipped as malformed or unknown")
OVERSIZED = Counter(
    "gateway_oversized_frames_total", "Media Stream messages skipped for exceeding the size caps", ["kind"]
)
STREAMS_REFUSED = Counter(
    "gateway_streams_refused_total", "Media streams refused at the start (bad call token, second stream)", ["reason"]
)
ORPHANS = Counter("gateway_orphaned_calls_total", "Calls of dead gateways finished by the sweeper")
ABANDONED_TASKS = Counter("gateway_abandoned_tasks_total", "Call tasks that ignored cancellation past the bound")
LOOP_LAG_BUCKETS_S = (
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
)
"""1 ms to 2 s: a healthy loop sits in the first buckets, a saturated one in the last."""
LOOP_LAG = Histogram(
    "gateway_event_loop_lag_seconds",
    "How late the event loop woke a sleeping task (actual minus requested delay)",
    buckets=LOOP_LAG_BUCKETS_S,
)
LOOP_LAG_INTERVAL_S = 0.05
"""How often the lag monitor samples the loop, seconds."""

for _stage in STAGES:
    STAGE_LATENCY.labels(_stage)
for _stage in ("stt", "llm", "tts", "webhook", "session", "redis"):
    ERRORS.labels(_stage)
for _reason in ("no_speech", "low_confidence", "known_hallucination"):
    DROPPED_TRANSCRIPTS.labels(_reason)
for _outcome in ("interrupted", "resumed"):
    BARGE_IN_PAUSES.labels(_outcome)
for _kind in ("message", "payload"):
    OVERSIZED.labels(_kind)


async def watch_event_loop_lag(interval_s: float = LOOP_LAG_INTERVAL_S) -> None:
    """Sleep ``interval_s`` over and over and observe how late each wake-up was into :data:`LOOP_LAG`.

    A loop busy with per-frame work (or blocked by a synchronous call) wakes the sleeper late: the
    lateness is what every call's timers (outbound pacing, the 20 ms frames) suffer at that moment.
    Runs until cancelled (the gateway's lifespan starts and cancels it).
    """
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(interval_s)
        LOOP_LAG.observe(max(0.0, loop.time() - start - interval_s))
