"""Repository of the keyword corrections: global rules (``agent_id`` ``None``) and each agent's own.

Rows only: the rules' meaning (literal vs regex, validation, applying them) is
:mod:`gateway.conversation.corrections`; callers build its ``Rule`` from a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db.models import CorrectionRule
from gateway.db.repos.agents import require_agent


class CorrectionRepo:
    """Keyword corrections: global (``agent_id`` ``None``) and per agent."""

    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def all(self, agent_id: int | None = None, scope: str = "all") -> Sequence[CorrectionRule]:
        """Rules by id. ``scope``: ``all``, ``global`` (agent-less) or ``agent`` (``agent_id``'s own)."""
        stmt = select(CorrectionRule).order_by(CorrectionRule.id)
        if scope == "global":
            stmt = stmt.where(CorrectionRule.agent_id.is_(None))
        elif agent_id is not None:
            stmt = stmt.where(CorrectionRule.agent_id == agent_id)
        return (await self.s.scalars(stmt)).all()

    async def rules_for(self, agent_id: int | None) -> Sequence[CorrectionRule]:
        """The rules a call to ``agent_id`` gets, in the order to apply them: global ones, then the
        agent's own (which override a global literal with the same pattern)."""
        stmt = select(CorrectionRule).order_by(CorrectionRule.agent_id.is_not(None), CorrectionRule.id)
        stmt = stmt.where(
            or_(CorrectionRule.agent_id.is_(None), CorrectionRule.agent_id == agent_id)
            if agent_id is not None
            else CorrectionRule.agent_id.is_(None)
        )
        return (await self.s.scalars(stmt)).all()

    async def get(self, rule_id: int) -> CorrectionRule | None:
        """By id, or ``None``."""
        return await self.s.get(CorrectionRule, rule_id)

    async def create(self, pattern: str, replacement: str, is_regex: bool, agent_id: int | None) -> CorrectionRule:
        """Add a rule.

        Raises:
            NotFound: ``agent_id`` names no agent.
        """
        if agent_id is not None:
            await require_agent(self.s, agent_id)
        row = CorrectionRule(pattern=pattern, replacement=replacement, is_regex=is_regex, agent_id=agent_id)
        self.s.add(row)
        await self.s.flush()
        return row

    async def update(self, row: CorrectionRule, **fields: Any) -> CorrectionRule:
        """Change any of pattern, replacement, is_regex, agent_id.

        Raises:
            NotFound: the new ``agent_id`` names no agent.
        """
        if fields.get("agent_id") is not None:
            await require_agent(self.s, fields["agent_id"])
        for key, value in fields.items():
            setattr(row, key, value)
        await self.s.flush()
        return row

    async def delete(self, row: CorrectionRule) -> None:
        """Remove the rule."""
        await self.s.delete(row)
        await self.s.flush()

    async def count(self) -> int:
        """Number of rules."""
        return int(await self.s.scalar(select(func.count()).select_from(CorrectionRule)) or 0)
