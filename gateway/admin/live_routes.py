"""``GET /calls/{call_sid}``: a call's live (or recently finished) record from Redis, behind the admin key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request

from gateway.admin.auth import require_admin

router = APIRouter()


@router.get("/calls/{call_sid:path}", dependencies=[Depends(require_admin)])
async def get_call(call_sid: str, request: Request) -> dict[str, Any]:
    """A call's record and turns from Redis (live or finished); needs the admin key (401 without)."""
    record = await request.app.state.deps.store.get_call(call_sid)
    if record is None:
        raise HTTPException(status_code=404, detail=f"unknown call {call_sid}")
    return dict(record)
