"""Repositories: every query of the gateway, each inside the caller's session and transaction
(``async with db.sessions() as s, s.begin(): ...``).

:mod:`~gateway.db.repos.agents` (agents, numbers), :mod:`~gateway.db.repos.corrections`,
:mod:`~gateway.db.repos.calls` (calls, turns, extractions), :mod:`~gateway.db.repos.outbox`
(webhook events and delivery attempts).
"""

from gateway.db.repos.agents import AgentRepo, Conflict, NotFound, NumberRepo
from gateway.db.repos.calls import CallRepo
from gateway.db.repos.corrections import CorrectionRepo
from gateway.db.repos.outbox import OutboxRepo

__all__ = ["AgentRepo", "CallRepo", "Conflict", "CorrectionRepo", "NotFound", "NumberRepo", "OutboxRepo"]
