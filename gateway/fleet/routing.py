"""Which gateway serves a call, decided when the carrier asks (Twilio's voice webhook, on any gateway).

A new call goes to the least-loaded live gateway (:meth:`~gateway.fleet.registry.GatewayRegistry.pick`).
The same CallSid asked for again mid-call (``CallStatus=in-progress``) means its stream ended
without the caller hanging up (Twilio ran the ``<Redirect>`` after ``<Connect><Stream>``): when the
call's record in Redis is still live, it is **resumed** on another gateway with a one-time grant
(:meth:`~gateway.conversation.store.CallStore.grant_resume`) that lets the new stream take the call
over (:mod:`gateway.conversation.resume`); a call that ended, or is ending by the agent's decision,
is hung up. A request for a live call that is not mid-call (a replayed first webhook, ``ringing``)
gets no grant: its stream is refused as a second stream of the call.

No gateway fits (none advertised, all draining, the only one excluded): this gateway streams the
call itself, unless it is draining. Redis down: this gateway, as a new call (the call is served;
only the resume is lost).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Literal

from gateway.conversation.store import CallStore
from gateway.fleet.registry import GatewayRegistry
from gateway.metrics import ERRORS

log = logging.getLogger(__name__)

ENDED_STATES = frozenset({"ending", "ended"})
"""Record states of a call that must not be resumed (see :mod:`gateway.conversation.resume`)."""


@dataclass(frozen=True)
class Route:
    """Where the carrier should send a call.

    ``action``: ``connect`` (stream the call), ``busy`` (a new call no gateway can take), or
    ``hangup`` (the call is over, or no gateway can resume it: ``apology`` says whether to excuse it).
    ``url``: the chosen gateway's advertised base URL (``None``: this gateway's own).
    ``resume_grant``: set when the stream resumes a live call. ``gateway_id``: the chosen gateway, if known.
    """

    action: Literal["connect", "busy", "hangup"]
    url: str | None = None
    resume_grant: str | None = None
    gateway_id: str | None = None
    apology: bool = False


async def route_call(
    registry: GatewayRegistry,
    store: CallStore,
    call_sid: str,
    *,
    mid_call: bool,
    max_routes: int,
    grant_ttl_s: int,
) -> Route:
    """Decide where ``call_sid`` streams (see the module docstring); never raises.

    Args:
        registry: this gateway's registry entry (also the fleet's view).
        store: the live calls' records.
        call_sid: the carrier's call id.
        mid_call: the carrier asks during the call (Twilio: ``CallStatus=in-progress``), not for a new one.
        max_routes: routes per call before giving up (``GATEWAY_FLEET__MAX_ROUTES``).
        grant_ttl_s: how long a resume grant waits for its stream, seconds.
    """
    try:
        meta = await store.call_meta(call_sid) if call_sid else None
        live = meta is not None and meta.get("status") == "in-progress"
        if meta is not None and (not live or meta.get("state") in ENDED_STATES):
            return Route("hangup")
        if not mid_call:
            meta = None  # not a resume (see the module docstring)
        exclude = [meta.get("gateway", "")] if meta is not None else []
        pick = await registry.pick(call_sid, [g for g in exclude if g])
        if pick.attempts > max_routes:
            log.warning("call %s: routed %d times; giving up", call_sid, pick.attempts - 1)
            return Route("hangup", apology=True)
        grant = None
        if meta is not None:
            grant = secrets.token_urlsafe(18)
            await store.grant_resume(call_sid, grant, grant_ttl_s)
            log.info("call %s: stream lost on %s; resuming on %s", call_sid, exclude[0], pick.gateway_id or "this one")
        if pick.gateway_id is not None:
            return Route("connect", pick.url, grant, pick.gateway_id)
    except Exception as exc:
        ERRORS.labels("redis").inc()
        log.warning("call %s: no registry (%r); streaming it here", call_sid, exc)
        return Route("connect", None, None, registry.gateway_id)
    if registry.draining:
        return Route("hangup", apology=True) if meta is not None else Route("busy")
    return Route("connect", None, grant, registry.gateway_id)
