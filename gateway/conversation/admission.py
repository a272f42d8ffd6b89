"""Whether to serve a caller connection: one live stream per call, across every gateway process."""

from __future__ import annotations

import asyncio
import logging

from gateway.conversation.deps import Deps
from gateway.conversation.resume import RESUME_PARAMETER
from gateway.conversation.transport import CallStarted

log = logging.getLogger(__name__)


async def refusal(deps: Deps, event: CallStarted) -> str | None:
    """Why the connection of ``event`` must not be served, or ``None`` to serve it.

    Refused: the carrier refused it (``token <reason>``: a missing, malformed, expired or foreign
    stream token), or the call already has a live stream in this process or, per the live store's
    claim (``SET NX`` with a TTL past the call's longest life), in another (``second stream``).
    A stream that presents the call's one-time resume grant (:mod:`gateway.conversation.resume`)
    takes the claim over from the lost stream instead. With the live store down the call is
    served; only this process's rule holds then.
    """
    sid = event.call_id
    if event.refused is not None:
        return f"token {event.refused}"
    if sid in deps.live_calls and not event.parameters.get(RESUME_PARAMETER):
        return "second stream"
    s = deps.settings
    try:
        async with asyncio.timeout(s.redis.socket_timeout_s):
            ttl = int(s.call.max_call_seconds + s.twilio.stream_token_ttl_s + 60)
            holder = await deps.store.claim_stream(sid, event.stream_id, ttl)
            grant = event.parameters.get(RESUME_PARAMETER)
            if holder is not None and grant and await deps.store.take_over_stream(sid, event.stream_id, grant, ttl):
                log.info("call %s: stream %s takes the call over from %s", sid, event.stream_id, holder)
                holder = None
    except Exception as exc:
        log.warning("call %s: could not claim the stream in the live store (%r)", sid, exc)
        holder = None
    return "second stream" if holder is not None else None
