"""Prometheus metrics of the STT service (process default registry, served at ``GET /metrics``).

Defined once at import so that several apps or schedulers in one process (tests, benchmarks)
share them instead of registering duplicates.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("stt_requests_total", "Transcription requests by endpoint and outcome", ["endpoint", "outcome"])
LATENCY = Histogram(
    "stt_request_duration_seconds",
    "Request latency from decoded audio to transcript (queue wait + batch)",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20),
)
AUDIO = Histogram("stt_audio_duration_seconds", "Duration of transcribed audio", buckets=(1, 2, 3, 5, 10, 30, 60, 120))
BATCH_SIZE = Histogram(
    "stt_batch_size",
    "30 s windows per batched generate call",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128),
)
BATCH_REQUESTS = Histogram(
    "stt_batch_requests", "Requests served by one batched generate call", buckets=(1, 2, 4, 8, 16, 32, 64, 128)
)
QUEUE_WAIT = Histogram(
    "stt_queue_wait_seconds",
    "Time a request waited in the scheduler queue before its batch started",
    buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10),
)
BATCH_SECONDS = Histogram(
    "stt_batch_duration_seconds",
    "Wall time of one batch: encode + generate + segments",
    buckets=(0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10, 20),
)
QUEUE_DEPTH = Gauge("stt_queue_depth", "Requests waiting in the scheduler queue")
REJECTED = Counter("stt_queue_rejected_total", "Requests refused with 503 because the queue was full")
CANCELLED = Counter("stt_queue_cancelled_total", "Queued requests dropped because their client went away")
STAGE_SECONDS = Histogram(
    "stt_stage_seconds",
    "Time per stage: features (per request, CPU) and setup/encode/generate/post (per batch)",
    ["stage"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
)
TURN_REQUESTS = Counter("stt_turn_requests_total", "Smart Turn checks (POST /v1/turn) by outcome", ["outcome"])
TURN_BATCH_SIZE = Histogram(
    "stt_turn_batch_size",
    "Turn checks served by one batched Smart Turn run",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32),
)
TURN_SECONDS = Histogram(
    "stt_turn_check_seconds",
    "Time of one turn check from arrival in the batcher to its probability (queue wait + batch)",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1),
)
TURN_BATCH_SECONDS = Histogram(
    "stt_turn_batch_duration_seconds",
    "Wall time of one batched Smart Turn run: features + ONNX",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1),
)
TURN_QUEUE_DEPTH = Gauge("stt_turn_queue_depth", "Turn checks waiting in the batcher")
