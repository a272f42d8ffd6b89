"""Repositories of the agents and their phone numbers (the number → agent map).

Each repository works inside the caller's :class:`AsyncSession` (the caller owns the
transaction: ``async with db.sessions() as s, s.begin(): ...``); writes are flushed at once so
constraint violations surface here as :class:`Conflict`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from gateway.db.models import Agent, PhoneNumber, utcnow


class Conflict(Exception):
    """A write broke a uniqueness rule (duplicate agent name or phone number)."""


class NotFound(Exception):
    """A referenced row does not exist.

    Attributes:
        field: the request field that named it (``agent_id``), for a 422 pointing at it.
    """

    def __init__(self, message: str, field: str = "agent_id") -> None:
        super().__init__(message)
        self.field = field


async def _flush(session: AsyncSession, what: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"{what} already exists") from exc


class AgentRepo:
    """Agents (a business's phone agent)."""

    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def all(self) -> Sequence[Agent]:
        """Every agent with its numbers, by name."""
        return (await self.s.scalars(select(Agent).options(selectinload(Agent.numbers)).order_by(Agent.name))).all()

    async def get(self, agent_id: int) -> Agent | None:
        """The agent with its numbers, or ``None``."""
        return await self.s.scalar(select(Agent).options(selectinload(Agent.numbers)).where(Agent.id == agent_id))

    async def default(self) -> Agent | None:
        """The agent flagged ``is_default``, if any."""
        return await self.s.scalar(select(Agent).where(Agent.is_default.is_(True)).order_by(Agent.id).limit(1))

    async def create(self, **fields: Any) -> Agent:
        """Insert an agent (fields as the model's columns).

        Raises:
            Conflict: an agent with that name exists.
        """
        if fields.get("is_default"):
            await self._clear_default()
        agent = Agent(**fields)
        self.s.add(agent)
        await _flush(self.s, f"agent {fields.get('name')!r}")
        return await self._reload(agent.id)

    async def update(self, agent: Agent, **fields: Any) -> Agent:
        """Set the given columns; ``is_default=True`` clears the flag on every other agent.

        Raises:
            Conflict: the new name is taken.
        """
        if fields.get("is_default"):
            await self._clear_default(except_id=agent.id)
        for key, value in fields.items():
            setattr(agent, key, value)
        agent.updated_at = utcnow()
        await _flush(self.s, f"agent {agent.name!r}")
        return await self._reload(agent.id)

    async def delete(self, agent: Agent) -> None:
        """Delete the agent with its numbers and corrections (its calls keep their history)."""
        await self.s.delete(agent)
        await self.s.flush()

    async def _clear_default(self, except_id: int | None = None) -> None:
        stmt = update(Agent).where(Agent.is_default.is_(True)).values(is_default=False)
        if except_id is not None:
            stmt = stmt.where(Agent.id != except_id)
        await self.s.execute(stmt)

    async def _reload(self, agent_id: int) -> Agent:
        agent = await self.s.scalar(
            select(Agent)
            .options(selectinload(Agent.numbers))
            .where(Agent.id == agent_id)
            .execution_options(populate_existing=True)
        )
        assert agent is not None
        return agent


class NumberRepo:
    """Phone numbers (E.164) and the agent each one reaches."""

    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def all(self, agent_id: int | None = None) -> Sequence[PhoneNumber]:
        """All numbers (or one agent's), by number."""
        stmt = select(PhoneNumber).order_by(PhoneNumber.number)
        if agent_id is not None:
            stmt = stmt.where(PhoneNumber.agent_id == agent_id)
        return (await self.s.scalars(stmt)).all()

    async def get(self, number_id: int) -> PhoneNumber | None:
        """By id, or ``None``."""
        return await self.s.get(PhoneNumber, number_id)

    async def agent_for(self, number: str) -> Agent | None:
        """The agent answering ``number`` (E.164, exact match), or ``None``."""
        return await self.s.scalar(
            select(Agent).join(PhoneNumber, PhoneNumber.agent_id == Agent.id).where(PhoneNumber.number == number)
        )

    async def create(self, number: str, agent_id: int, label: str | None = None) -> PhoneNumber:
        """Map ``number`` to an agent.

        Raises:
            NotFound: no such agent.
            Conflict: the number is already mapped.
        """
        await require_agent(self.s, agent_id)
        row = PhoneNumber(number=number, agent_id=agent_id, label=label)
        self.s.add(row)
        await _flush(self.s, f"number {number}")
        return row

    async def update(self, row: PhoneNumber, **fields: Any) -> PhoneNumber:
        """Change ``number``, ``agent_id`` or ``label``.

        Raises:
            NotFound: the new agent does not exist.
            Conflict: the new number is already mapped.
        """
        if fields.get("agent_id") is not None:
            await require_agent(self.s, fields["agent_id"])
        for key, value in fields.items():
            setattr(row, key, value)
        await _flush(self.s, f"number {row.number}")
        return row

    async def delete(self, row: PhoneNumber) -> None:
        """Unmap the number."""
        await self.s.delete(row)
        await self.s.flush()


async def require_agent(session: AsyncSession, agent_id: int) -> None:
    """Check that ``agent_id`` names an agent.

    Raises:
        NotFound: it does not (``field="agent_id"``).
    """
    if await session.get(Agent, agent_id) is None:
        raise NotFound(f"no agent {agent_id}")
