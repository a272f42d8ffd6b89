"""Admin API: agents, phone numbers and keyword corrections (CRUD).

Every write goes through :data:`~gateway.admin.deps.Change`, which drops the gateway's cached
number → agent map afterwards (:meth:`~gateway.agents.resolver.AgentResolver.invalidate`), so the
next call reads it again instead of the cached one.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from gateway.admin.auth import require_admin
from gateway.admin.deps import Change, RepoErrorRoute, Tx, get_or_404, invalid
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
from gateway.conversation.corrections import Rule, RuleCorrections
from gateway.db.models import Agent
from gateway.db.repos import AgentRepo, CorrectionRepo, NumberRepo

router = APIRouter(prefix="/api", dependencies=[Depends(require_admin)], route_class=RepoErrorRoute)


def agent_out(agent: Agent) -> AgentOut:
    """The API view of an agent."""
    return AgentOut(
        id=agent.id,
        name=agent.name,
        greeting=agent.greeting,
        system_prompt=agent.system_prompt,
        voice=agent.voice,
        language=agent.language,
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


# ---- agents ----------------------------------------------------------------------------
@router.get("/agents", response_model=list[AgentOut], tags=["agents"])
async def list_agents(s: Tx) -> list[AgentOut]:
    """Every agent with its numbers."""
    return [agent_out(a) for a in await AgentRepo(s).all()]


@router.post("/agents", response_model=AgentOut, status_code=201, tags=["agents"])
async def create_agent(body: AgentIn, change: Change) -> AgentOut:
    """Create an agent (409 if the name is taken)."""
    return agent_out(await AgentRepo(change.session).create(**_agent_fields(body, unset=False)))


@router.get("/agents/{agent_id}", response_model=AgentOut, tags=["agents"])
async def get_agent(agent_id: int, s: Tx) -> AgentOut:
    """One agent (404 if unknown)."""
    return agent_out(await get_or_404(AgentRepo(s).get, agent_id, "agent"))


@router.patch("/agents/{agent_id}", response_model=AgentOut, tags=["agents"])
async def update_agent(agent_id: int, body: AgentPatch, change: Change) -> AgentOut:
    """Change some fields of an agent (409 if the new name is taken)."""
    repo = AgentRepo(change.session)
    agent = await get_or_404(repo.get, agent_id, "agent")
    return agent_out(await repo.update(agent, **_agent_fields(body, unset=True)))


@router.delete("/agents/{agent_id}", status_code=204, tags=["agents"])
async def delete_agent(agent_id: int, change: Change) -> Response:
    """Delete an agent with its numbers and corrections (its calls stay)."""
    repo = AgentRepo(change.session)
    agent = await get_or_404(repo.get, agent_id, "agent")
    change.moved.update(n.number for n in agent.numbers)
    await repo.delete(agent)
    return Response(status_code=204)


# ---- numbers ---------------------------------------------------------------------------
@router.get("/numbers", response_model=list[NumberOut], tags=["numbers"])
async def list_numbers(s: Tx, agent_id: int | None = None) -> list[NumberOut]:
    """All numbers, or one agent's."""
    return [NumberOut.model_validate(n) for n in await NumberRepo(s).all(agent_id)]


@router.post("/numbers", response_model=NumberOut, status_code=201, tags=["numbers"])
async def create_number(body: NumberIn, change: Change) -> NumberOut:
    """Map an E.164 number to an agent (409 if already mapped, 422 if the agent does not exist)."""
    change.moved.add(body.number)
    return NumberOut.model_validate(await NumberRepo(change.session).create(body.number, body.agent_id, body.label))


@router.get("/numbers/{number_id}", response_model=NumberOut, tags=["numbers"])
async def get_number(number_id: int, s: Tx) -> NumberOut:
    """One number."""
    return NumberOut.model_validate(await get_or_404(NumberRepo(s).get, number_id, "number"))


@router.patch("/numbers/{number_id}", response_model=NumberOut, tags=["numbers"])
async def update_number(number_id: int, body: NumberPatch, change: Change) -> NumberOut:
    """Re-map or relabel a number (409 if the new number is mapped, 422 if the agent does not exist)."""
    repo = NumberRepo(change.session)
    row = await get_or_404(repo.get, number_id, "number")
    fields = body.model_dump(exclude_unset=True)
    change.moved.update(n for n in (row.number, fields.get("number")) if n)
    for name in ("number", "agent_id"):
        if name in fields and fields[name] is None:
            raise invalid(name, ValueError(f"{name} cannot be null"))
    return NumberOut.model_validate(await repo.update(row, **fields))


@router.delete("/numbers/{number_id}", status_code=204, tags=["numbers"])
async def delete_number(number_id: int, change: Change) -> Response:
    """Unmap a number."""
    repo = NumberRepo(change.session)
    row = await get_or_404(repo.get, number_id, "number")
    change.moved.add(row.number)
    await repo.delete(row)
    return Response(status_code=204)


# ---- corrections -----------------------------------------------------------------------
@router.get("/corrections", response_model=list[CorrectionOut], tags=["corrections"])
async def list_corrections(
    s: Tx,
    agent_id: int | None = None,
    scope: str = Query("all", pattern="^(all|global|agent)$"),
) -> list[CorrectionOut]:
    """Rules: all, only global ones (``scope=global``) or one agent's (``agent_id``)."""
    return [CorrectionOut.model_validate(r) for r in await CorrectionRepo(s).all(agent_id, scope)]


@router.post("/corrections", response_model=CorrectionOut, status_code=201, tags=["corrections"])
async def create_correction(body: CorrectionIn, change: Change) -> CorrectionOut:
    """Add a rule (global without ``agent_id``); a regex must compile (422 otherwise)."""
    row = await CorrectionRepo(change.session).create(body.pattern, body.replacement, body.is_regex, body.agent_id)
    return CorrectionOut.model_validate(row)


@router.patch("/corrections/{rule_id}", response_model=CorrectionOut, tags=["corrections"])
async def update_correction(rule_id: int, body: CorrectionPatch, change: Change) -> CorrectionOut:
    """Change a rule; the result is validated as a whole (a regex must still compile)."""
    repo = CorrectionRepo(change.session)
    row = await get_or_404(repo.get, rule_id, "correction")
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


@router.delete("/corrections/{rule_id}", status_code=204, tags=["corrections"])
async def delete_correction(rule_id: int, change: Change) -> Response:
    """Remove a rule."""
    repo = CorrectionRepo(change.session)
    await repo.delete(await get_or_404(repo.get, rule_id, "correction"))
    return Response(status_code=204)


@router.post("/corrections/test", tags=["corrections"])
async def test_corrections(body: CorrectionTest, s: Tx) -> dict[str, str]:
    """Apply the global rules and ``agent_id``'s own to ``text`` (what a call to that agent would get)."""
    rows = await CorrectionRepo(s).rules_for(body.agent_id)
    rules = RuleCorrections(Rule(r.pattern, r.replacement, r.is_regex) for r in rows)
    return {"text": body.text, "corrected": rules.apply(body.text)}
