"""HTTP glue of ``POST /v1/turn``: Smart Turn end-of-turn checks for the gateways, batched across calls.

The body is the caller's utterance so far as raw PCM16 little-endian mono at 16 kHz
(``application/octet-stream``); only the last 8 s are used (a client sends no more). The answer is
``{"probability": p}``. Errors are OpenAI-shaped (:class:`shared.errors.APIError`): 400 empty or
odd-length body, 413 a body over ``STT_MAX_AUDIO_SECONDS``, 503 no model (disabled, missing file)
or queue full / shutting down (with ``Retry-After``).
"""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request

from services.stt import metrics
from services.stt.schemas import TurnProbability
from services.stt.turn_batching import TurnBatcherClosedError, TurnService
from shared.errors import APIError, QueueFullError
from shared.smart_turn import SAMPLE_RATE_HZ, last_window

router = APIRouter()


def _bad(message: str, status: int = 400, code: str | None = None) -> APIError:
    metrics.TURN_REQUESTS.labels("bad_request").inc()
    return APIError(status, message, param="body", code=code)


@router.post("/v1/turn", response_model=TurnProbability)
async def turn(request: Request) -> TurnProbability:
    """P(turn complete) for the utterance in the body (PCM16 LE mono 16 kHz; the last 8 s count).

    Errors: 400 empty or odd-length body, 413 too long, 503 Smart Turn unavailable or queue full.
    """
    service: TurnService = request.app.state.turn
    data = await request.body()
    if not data:
        raise _bad("the request body (PCM16 audio, 16 kHz mono) is empty")
    if len(data) % 2:
        raise _bad(f"the body has {len(data)} bytes; PCM16 needs an even count", code="invalid_value")
    limit = request.app.state.settings.max_audio_seconds
    if len(data) > limit * SAMPLE_RATE_HZ * 2:
        raise _bad(
            f"the body is {len(data) / 2 / SAMPLE_RATE_HZ:.1f}s; the limit is {limit:.0f}s", 413, "audio_too_long"
        )
    if service.batcher is None:
        metrics.TURN_REQUESTS.labels("unavailable").inc()
        raise APIError(503, service.error or "Smart Turn is not loaded", type="server_error", code="model_not_ready")
    pcm16 = last_window(np.frombuffer(data, dtype="<i2")).astype(np.int16)
    try:
        probability = await service.batcher.submit(pcm16)
    except QueueFullError as exc:
        metrics.TURN_REQUESTS.labels("queue_full").inc()
        raise APIError(
            503, str(exc), type="server_error", code="queue_full", headers={"Retry-After": str(exc.retry_after_s)}
        ) from exc
    except TurnBatcherClosedError as exc:
        raise APIError(503, str(exc), type="server_error", code="shutting_down", headers={"Retry-After": "5"}) from exc
    metrics.TURN_REQUESTS.labels("ok").inc()
    return TurnProbability(probability=probability)
