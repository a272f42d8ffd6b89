"""Dependencies of the admin routes: the database runtime, a transaction per request, get-or-404.

After full-stack-fastapi-template's ``SessionDep = Annotated[Session, Depends(get_db)]``::

    @router.get("/agents/{agent_id}")
    async def get_agent(agent_id: int, s: Tx) -> AgentOut:
        return agent_out(await get_or_404(AgentRepo(s).get, agent_id, "agent"))

:data:`Tx` is a session inside a transaction, committed when the handler returns (before the
response is sent: ``scope="function"``, so the next request sees the write) and rolled back when it
raises. :data:`Change` is the same for writes to agents, numbers and corrections, and afterwards
(committed or not) drops the gateway's cached number → agent map. The repositories' ``Conflict``
and ``NotFound`` become 409 and 422 through :class:`RepoErrorRoute`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.after_call.runtime import DatabaseRuntime
from gateway.db.repos import Conflict, NotFound

K = TypeVar("K")
T = TypeVar("T")


def database_runtime(request: Request) -> DatabaseRuntime:
    """The app's database runtime (``app.state.db_runtime``).

    Raises:
        HTTPException: 503 when the gateway runs without a database.
    """
    runtime: DatabaseRuntime | None = getattr(request.app.state, "db_runtime", None)
    if runtime is None:
        raise HTTPException(
            status_code=503, detail="database disabled (GATEWAY_DATABASE__ENABLED / GATEWAY_DATABASE_ENABLED is false)"
        )
    return runtime


Runtime = Annotated[DatabaseRuntime, Depends(database_runtime)]
"""The database runtime of the app (503 without one)."""


async def _transaction(runtime: Runtime) -> AsyncIterator[AsyncSession]:
    async with runtime.db.sessions() as session, session.begin():
        yield session


Tx = Annotated[AsyncSession, Depends(_transaction, scope="function")]
"""A session in a transaction, committed when the handler returns (503 without a database)."""


@dataclass
class ConfigChange:
    """A write to agents, numbers or corrections.

    Attributes:
        session: the transaction's session.
        moved: numbers whose agent may change (mapped, re-mapped, unmapped, agent deleted), filled
            in by the handler: their cached answers stop serving as a fallback too.
    """

    session: AsyncSession
    moved: set[str] = field(default_factory=set)


async def _change(runtime: Runtime) -> AsyncIterator[ConfigChange]:
    change: ConfigChange | None = None
    try:
        async with runtime.db.sessions() as session, session.begin():
            change = ConfigChange(session)
            yield change
    finally:  # after the commit (or the rollback): a call starting now reads the new map
        runtime.hooks.invalidate(change.moved if change is not None else ())


Change = Annotated[ConfigChange, Depends(_change, scope="function")]
"""A configuration write's transaction; the cached number → agent map is dropped afterwards."""


async def get_or_404(get: Callable[[K], Awaitable[T | None]], key: K, what: str) -> T:
    """``await get(key)``, or a 404 ``no <what> <key>`` when it is ``None``.

    Raises:
        HTTPException: 404.
    """
    row = await get(key)
    if row is None:
        raise HTTPException(status_code=404, detail=f"no {what} {key}")
    return row


def invalid(field_name: str, exc: Exception) -> RequestValidationError:
    """A 422 pointing at body field ``field_name``, with ``exc``'s message."""
    return RequestValidationError([{"loc": ("body", field_name), "msg": str(exc), "type": "value_error"}])


class RepoErrorRoute(APIRoute):
    """Answers the repositories' errors, wherever in the request they are raised (handler or commit):
    ``Conflict`` → 409, ``NotFound`` → 422 on the field that named the missing row."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Conflict as exc:
                raise HTTPException(status_code=409, detail=str(exc)) from exc
            except NotFound as exc:
                raise invalid(exc.field, exc) from exc

        return handle
