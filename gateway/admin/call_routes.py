"""Admin API: calls with transcript, extraction, webhook deliveries and the recording.

A call SID is whatever the stream's ``start`` frame carried, so it may contain ``/``: the routes
take it as ``{call_sid:path}`` (the page sends it URL-encoded) and a sid ending in one of the
sub-resource names below resolves to that sub-resource, never to another call.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.admin.auth import require_admin
from gateway.admin.deps import Runtime, Tx, get_or_404
from gateway.admin.schemas import CallDetail, CallOut, CallPage, ExtractionOut, TurnOut, WebhookEventOut
from gateway.config import GatewaySettings
from gateway.db.models import Call
from gateway.db.repos import CallRepo, OutboxRepo

router = APIRouter(prefix="/api", dependencies=[Depends(require_admin)], tags=["calls"])


def call_out(call: Call) -> CallOut:
    """The list view of a call."""
    return CallOut(
        call_sid=call.call_sid,
        from_number=call.from_number,
        to_number=call.to_number,
        agent_id=call.agent_id,
        agent_name=call.agent_name,
        status=call.status,
        started_at=call.started_at,
        ended_at=call.ended_at,
        duration_s=call.duration_s,
        has_recording=bool(call.recording_path),
        extraction_status=call.extraction_status,
    )


async def _call(s: AsyncSession, call_sid: str) -> Call:
    """The call with its turns and extraction (404 if unknown)."""
    return await get_or_404(partial(CallRepo(s).get, details=True), call_sid, "call")


@router.get("/calls", response_model=CallPage)
async def list_calls(
    s: Tx,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
    agent_id: int | None = None,
    status: str | None = Query(None, max_length=20),
    number: str | None = Query(None, max_length=32, description="matches the caller or the called number"),
) -> CallPage:
    """Calls, newest first."""
    rows, total = await CallRepo(s).page(limit, offset, agent_id, status, number)
    return CallPage(items=[call_out(c) for c in rows], total=total, limit=limit, offset=offset)


@router.get("/calls/{call_sid:path}/transcript", response_model=list[TurnOut])
async def get_transcript(call_sid: str, s: Tx) -> list[TurnOut]:
    """The call's turns in order."""
    return [TurnOut.model_validate(t) for t in (await _call(s, call_sid)).turns]


@router.get("/calls/{call_sid:path}/extraction", response_model=ExtractionOut)
async def get_extraction(call_sid: str, s: Tx) -> ExtractionOut:
    """The post-call extraction (404 until it exists)."""
    call = await _call(s, call_sid)
    if call.extraction is None:
        raise HTTPException(status_code=404, detail=f"no extraction for {call_sid} ({call.extraction_status})")
    return ExtractionOut.model_validate(call.extraction)


@router.post("/calls/{call_sid:path}/extraction", status_code=202)
async def rerun_extraction(call_sid: str, s: Tx, runtime: Runtime) -> dict[str, str]:
    """Run the extraction again (in the background; already-sent webhooks are not re-sent)."""
    repo = CallRepo(s)
    call = await get_or_404(repo.get, call_sid, "call")
    if call.ended_at is None:
        raise HTTPException(status_code=409, detail="the call is still in progress")
    await repo.request_extraction(call)
    await s.commit()  # before the worker looks for it
    runtime.worker.start()
    runtime.worker.wake()
    return {"status": "pending"}


@router.get("/calls/{call_sid:path}/webhooks", response_model=list[WebhookEventOut])
async def get_webhooks(call_sid: str, s: Tx) -> list[WebhookEventOut]:
    """The call's webhook events and every delivery attempt."""
    await get_or_404(CallRepo(s).get, call_sid, "call")
    return [WebhookEventOut.model_validate(e) for e in await OutboxRepo(s).for_call(call_sid)]


@router.post("/webhooks/{event_id}/retry", status_code=202, response_model=WebhookEventOut)
async def retry_webhook(event_id: int, s: Tx, runtime: Runtime) -> WebhookEventOut:
    """Deliver a pending or failed event now."""
    repo = OutboxRepo(s)
    row = await get_or_404(repo.get, event_id, "webhook event")
    await repo.retry_now(row)
    out = WebhookEventOut.model_validate(row)
    await s.commit()  # before the dispatcher looks for it
    runtime.dispatcher.wake()
    return out


@router.get("/webhooks/stats")
async def webhook_stats(s: Tx) -> dict[str, int]:
    """Outbox events by status (held, pending, delivered, failed)."""
    return await OutboxRepo(s).counts()


@router.get(
    "/calls/{call_sid:path}/recording",
    response_class=FileResponse,
    responses={200: {"content": {"audio/wav": {}}, "description": "8 kHz mono PCM16 WAV, both sides mixed"}},
)
async def get_recording(call_sid: str, s: Tx, request: Request) -> FileResponse:
    """The call's recording (404 if recording was off or the file is gone)."""
    call = await get_or_404(CallRepo(s).get, call_sid, "call")
    settings: GatewaySettings = request.app.state.settings
    if not call.recording_path:
        raise HTTPException(status_code=404, detail=f"no recording for {call_sid}")
    base = (Path(settings.data_dir) / "recordings").resolve()
    path = (Path(settings.data_dir) / call.recording_path).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        raise HTTPException(status_code=404, detail=f"recording of {call_sid} is missing")
    return FileResponse(path, media_type="audio/wav", filename=path.name)


# Last: ``{call_sid:path}`` also matches ``CA…/transcript``, so the routes above must be tried first.
@router.get("/calls/{call_sid:path}", response_model=CallDetail)
async def get_call(call_sid: str, s: Tx) -> CallDetail:
    """A call with its transcript, extraction and webhook deliveries."""
    call = await _call(s, call_sid)
    events = await OutboxRepo(s).for_call(call_sid)
    return CallDetail(
        **call_out(call).model_dump(),
        turns=[TurnOut.model_validate(t) for t in call.turns],
        extraction=ExtractionOut.model_validate(call.extraction) if call.extraction else None,
        webhooks=[WebhookEventOut.model_validate(e) for e in events],
    )
