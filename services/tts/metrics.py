"""Prometheus metrics of the TTS service (process default registry, served at ``GET /metrics``).

Defined once at import so that several apps in one process (tests, benchmarks) share them
instead of registering duplicates. ``endpoint`` labels: ``speech`` (HTTP) and ``stream`` (WebSocket).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("tts_requests_total", "Speech requests by endpoint and outcome", ["endpoint", "outcome"])
LATENCY = Histogram(
    "tts_request_duration_seconds", "Synthesis latency", buckets=(0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 3, 5, 10, 20)
)
TTFA = Histogram(
    "tts_time_to_first_audio_seconds",
    "Request start to first audio bytes",
    ["endpoint"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10),
)
AUDIO = Histogram("tts_audio_duration_seconds", "Duration of synthesised audio", buckets=(1, 2, 3, 5, 10, 30, 60))
RTF = Histogram(
    "tts_real_time_factor",
    "Synthesis wall time / audio duration per request",
    buckets=(0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 5),
)
CANCELLED = Counter("tts_cancelled_total", "Syntheses dropped by cancel or client disconnect", ["endpoint"])
QUEUE_DEPTH = Gauge("tts_queue_depth", "Segments waiting for synthesis")
INFLIGHT = Gauge("tts_inflight_batches", "Synthesis batches running now")
PHRASE_CACHE = Counter("tts_phrase_cache_lookups_total", "Phrase-cache lookups of cacheable segments", ["result"])
