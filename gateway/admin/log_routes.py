"""``GET /logs``: the gateway's recent log events, for the admin page's *Logs* tab (admin key).

:class:`RecentLogs` is a logging handler on the root logger that keeps this process's last
records (INFO and up) in memory, each with the call it is about when its message names one
(``CA…`` Twilio CallSids, ``WB…`` browser calls), so an operator can follow a call without a shell
on the box. It is a view of recent events, not a log store: each worker process keeps its own, and
nothing survives a restart (ship the process's stdout for that).
"""

from __future__ import annotations

import logging
import re
from collections import deque
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from gateway.admin.auth import require_admin

_CALL = re.compile(r"\b(?:CA|WB)[0-9a-f]{32}\b")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class RecentLogs(logging.Handler):
    """The last ``capacity`` records at ``level`` or above, as dicts (``at`` Unix s, ``level``,
    ``logger``, ``message``, ``call``).

    Args:
        capacity: records kept (the oldest go first).
        level: the least level kept.
    """

    def __init__(self, capacity: int = 2000, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.records: deque[dict[str, Any]] = deque(maxlen=capacity)
        self.seq = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Keep one record (its message formatted, cut at 2000 characters); never raises."""
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                message += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            call = _CALL.search(message)
            self.seq += 1
            self.records.append(
                {
                    "seq": self.seq,
                    "at": record.created,
                    "level": record.levelname,
                    "logger": record.name,
                    "message": message[:2000],
                    "call": call.group(0) if call else None,
                }
            )
        except Exception:
            self.handleError(record)

    def query(
        self, level: str = "INFO", call: str | None = None, after: int = 0, limit: int = 200
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` records at ``level`` or above, about ``call`` if given, after ``seq``
        ``after``; oldest first."""
        least = logging.getLevelName(level)
        out = [
            r
            for r in list(self.records)
            if r["seq"] > after and logging.getLevelName(r["level"]) >= least and (call is None or r["call"] == call)
        ]
        return out[-limit:]


router = APIRouter(tags=["admin"])


@router.get("/logs", dependencies=[Depends(require_admin)])
async def logs(
    request: Request,
    level: str = Query("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$"),
    call: str | None = Query(None, max_length=64, description="Only events about this call id"),
    after: int = Query(0, ge=0, description="Only events after this seq (poll with the last one seen)"),
    limit: int = Query(200, ge=1, le=2000),
) -> dict[str, Any]:
    """This process's recent log events (``{"items": [...], "capacity": n}``); 401 without the admin key."""
    recent: RecentLogs = request.app.state.recent_logs
    return {"items": recent.query(level, call, after, limit), "capacity": recent.records.maxlen}
