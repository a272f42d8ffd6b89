"""Admin API: agents, phone numbers and keyword corrections (CRUD).

Every write tells the gateway's call hooks (:meth:`~gateway.after_call.lifecycle.DatabaseHooks.invalidate`),
so the next call reads the number → agent map again instead of the cached one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.admin.auth import require_admin, transaction
from gateway.admin.schemas import (
    AgentIn,
    AgentOut,
    AgentPatch,
    CorrectionIn,
    CorrectionOut,
    CorrectionPatch,
    CorrectionTest,
    NumberIn,
    NumberOut,
    NumberPatch,
)
from gateway.db.corrections import RuleCorrections
from gateway.db.models import Agent
from gateway.db.repos import AgentRepo, Conflict, CorrectionRepo, NotFound, NumberRepo

router = APIRouter(prefix="/api", dependencies=[Depends(require_admin)])


def agent_out(agent: Agent) -> AgentOut:
    """The API view of an agent."""
    return AgentOut(
        id=agent.id,
        name=agent.name,
        greeting=agent.greeting,
        system_prompt=agent.system_prompt,
        voice=agent.voice,
        facts=agent.facts or {},
        transfer_number=agent.transfer_number,
        webhook_url=agent.webhook_url,
        webhook_secret_set=bool(agent.webhook_secret),
        webhook_events=list(agent.webhook_events or []),
        is_default=agent.is_default,
        numbers=[n.number for n in agent.numbers],
        created_at=agent.created_at,
        updated_at=agent.updated_at,
    )


def _agent_fields(body: AgentIn | AgentPatch, unset: bool) -> dict[str, Any]:
    fields = body.model_dump(exclude_unset=unset)
    if fields.get("webhook_url") is not None:
        fields["webhook_url"] = str(body.webhook_url)
    return fields


def _conflict(exc: Conflict) -> HTTPException:
    return HTTPException(status_code=409, detail=str(exc))


def _invalid(field: str, exc: Exception) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", field), "msg": str(exc), "type": "value_error"}])


@asynccontextmanager
async def change(request: Request, moved: set[str] | None = None) -> AsyncIterator[AsyncSession]:
    """A write transaction on agents, numbers or corrections; afterwards (committed or not) the
    gateway's cached number → agent map is dropped.

    Args:
        moved: filled in by the caller with the numbers whose agent may change (mapped, re-mapped,
            unmapped, agent deleted): their cached answers stop serving as a fallback too.
    """
    try:
        async with transaction(request) as s:
            yield s
    finally:
        hooks = getattr(getattr(request.app.state, "db_runtime", None), "hooks", None)
        if hooks is not None:
            hooks.invalidate(moved or ())


# ---- agents ----------------------------------------------------------------------------
@router.get("/agents", response_model=list[AgentOut], tags=["agents"])
async def list_agents(request: Request) -> list[AgentOut]:
    """Every agent with its numbers."""
    async with transaction(request) as s:
        return [agent_out(a) for a in await AgentRepo(s).all()]


@router.post("/agents", response_model=AgentOut, status_code=201, tags=["agents"])
async def create_agent(body: AgentIn, request: Request) -> AgentOut:
    """Create an agent (409 if the name is taken)."""
    try:
        async with change(request) as s:
            return agent_out(await AgentRepo(s).create(**_agent_fields(body, unset=False)))
    except Conflict as exc:
        raise _conflict(exc) from exc


@router.get("/agents/{agent_id}", response_model=AgentOut, tags=["agents"])
async def get_agent(agent_id: int, request: Request) -> AgentOut:
    """One agent (404 if unknown)."""
    async with transaction(request) as s:
        agent = await AgentRepo(s).get(agent_id)
        if agent is None:
            raise HTTPException(status_code=404, detail=f"no agent {agent_id}")
        return agent_out(agent)


@router.patch("/agents/{agent_id}", response_model=AgentOut, tags=["agents"])
async def update_agent(agent_id: int, body: AgentPatch, request: Request) -> AgentOut:
    """Change some fields of an agent."""
    try:
        async with change(request) as s:
            repo = AgentRepo(s)
            agent = await repo.get(agent_id)
            if agent is None:
                raise HTTPException(status_code=404, detail=f"no agent {agent_id}")
            return agent_out(await repo.update(agent, **_agent_fields(body, unset=True)))
    except Conflict as exc:
        raise _conflict(exc) from exc


@router.delete("/agents/{agent_id}", status_code=204, tags=["agents"])
async def delete_agent(agent_id: int, request: Request) -> Response:
    """Delete an agent with its numbers and corrections (its calls stay)."""
    moved: set[str] = set()
    async with change(request, moved) as s:
        repo = AgentRepo(s)
        agent = await repo.get(agent_id)
        if agent is None:
            raise HTTPException(status_code=404, detail=f"no agent {agent_id}")
        moved.update(n.number for n in agent.numbers)
        await repo.delete(agent)
    return Response(status_code=204)


# ---- numbers ---------------------------------------------------------------------------
@router.get("/numbers", response_model=list[NumberOut], tags=["numbers"])
async def list_numbers(request: Request, agent_id: int | None = None) -> list[NumberOut]:
    """All numbers, or one agent's."""
    async with transaction(request) as s:
        return [NumberOut.model_validate(n) for n in await NumberRepo(s).all(agent_id)]


@router.post("/numbers", response_model=NumberOut, status_code=201, tags=["numbers"])
async def create_number(body: NumberIn, request: Request) -> NumberOut:
    """Map an E.164 number to an agent (409 if already mapped, 422 if the agent does not exist)."""
    try:
        async with change(request, {body.number}) as s:
            return NumberOut.model_validate(await NumberRepo(s).create(body.number, body.agent_id, body.label))
    except Conflict as exc:
        raise _conflict(exc) from exc
    except NotFound as exc:
        raise _invalid("agent_id", exc) from exc


@router.get("/numbers/{number_id}", response_model=NumberOut, tags=["numbers"])
async def get_number(number_id: int, request: Request) -> NumberOut:
    """One number."""
    async with transaction(request) as s:
        row = await NumberRepo(s).get(number_id)
        if row is None:
            raise HTTPException(status_code=404, detail=f"no number {number_id}")
        return NumberOut.model_validate(row)


@router.patch("/numbers/{number_id}", response_model=NumberOut, tags=["numbers"])
async def update_number(number_id: int, body: NumberPatch, request: Request) -> NumberOut:
    """Re-map or relabel a number."""
    moved: set[str] = set()
    try:
        async with change(request, moved) as s:
            repo = NumberRepo(s)
            row = await repo.get(number_id)
            if row is None:
                raise HTTPException(status_code=404, detail=f"no number {number_id}")
            fields = body.model_dump(exclude_unset=True)
            moved.update(n for n in (row.number, fields.get("number")) if n)
            for name in ("number", "agent_id"):
                if name in fields and fields[name] is None:
                    raise _invalid(name, ValueError(f"{name} cannot be null"))
            return NumberOut.model_validate(await repo.update(row, **fields))
    except Conflict as exc:
        raise _conflict(exc) from exc
    except NotFound as exc:
        raise _invalid("agent_id", exc) from exc


@router.delete("/numbers/{number_id}", status_code=204, tags=["numbers"])
async def delete_number(number_id: int, request: Request) -> Response:
    """Unmap a number."""
    moved: set[str] = set()
    async with change(request, moved) as s:
        repo = NumberRepo(s)
        row = await repo.get(number_id)
        if row is None:
            raise HTTPException(status_code=404, detail=f"no number {number_id}")
        moved.add(row.number)
        await repo.delete(row)
    return Response(status_code=204)


# ---- corrections -----------------------------------------------------------------------
@router.get("/corrections", response_model=list[CorrectionOut], tags=["corrections"])
async def list_corrections(
    request: Request,
    agent_id: int | None = None,
    scope: str = Query("all", pattern="^(all|global|agent)$"),
) -> list[CorrectionOut]:
    """Rules: all, only global ones (``scope=global``) or one agent's (``agent_id``)."""
    async with transaction(request) as s:
        return [CorrectionOut.model_validate(r) for r in await CorrectionRepo(s).all(agent_id, scope)]


@router.post("/corrections", response_model=CorrectionOut, status_code=201, tags=["corrections"])
async def create_correction(body: CorrectionIn, request: Request) -> CorrectionOut:
    """Add a rule (global without ``agent_id``); a regex must compile (422 otherwise)."""
    try:
        async with change(request) as s:
            row = await CorrectionRepo(s).create(body.pattern, body.replacement, body.is_regex, body.agent_id)
            return CorrectionOut.model_validate(row)
    except NotFound as exc:
        raise _invalid("agent_id", exc) from exc


@router.patch("/corrections/{rule_id}", response_model=CorrectionOut, tags=["corrections"])
async def update_correction(rule_id: int, body: CorrectionPatch, request: Request) -> CorrectionOut:
    """Change a rule; the result is validated as a whole (a regex must still compile)."""
    try:
        async with change(request) as s:
            repo = CorrectionRepo(s)
            row = await repo.get(rule_id)
            if row is None:
                raise HTTPException(status_code=404, detail=f"no correction {rule_id}")
            fields = body.model_dump(exclude_unset=True)
            merged = {
                "pattern": row.pattern,
                "replacement": row.replacement,
                "is_regex": row.is_regex,
                "agent_id": row.agent_id,
                **fields,
            }
            try:
                CorrectionIn.model_validate(merged)
            except ValidationError as exc:
                errors = exc.errors(include_url=False, include_context=False)
                raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from exc
            return CorrectionOut.model_validate(await repo.update(row, **fields))
    except NotFound as exc:
        raise _invalid("agent_id", exc) from exc


@router.delete("/corrections/{rule_id}", status_code=204, tags=["corrections"])
async def delete_correction(rule_id: int, request: Request) -> Response:
    """Remove a rule."""
    async with change(request) as s:
        repo = CorrectionRepo(s)
        row = await repo.get(rule_id)
        if row is None:
            raise HTTPException(status_code=404, detail=f"no correction {rule_id}")
        await repo.delete(row)
    return Response(status_code=204)


@router.post("/corrections/test", tags=["corrections"])
async def test_corrections(body: CorrectionTest, request: Request) -> dict[str, str]:
    """Apply the global rules and ``agent_id``'s own to ``text`` (what a call to that agent would get)."""
    async with transaction(request) as s:
        rules = await CorrectionRepo(s).rules_for(body.agent_id)
    return {"text": body.text, "corrected": RuleCorrections(rules).apply(body.text)}
