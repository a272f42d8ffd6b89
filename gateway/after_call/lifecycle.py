"""Deprecated: the old home of the database hooks, split by responsibility. Kept only until
gateway/app.py imports from the new homes; nothing else imports it.

* :class:`~gateway.agents.resolver.AgentResolver`, :func:`~gateway.agents.resolver.render_prompt`,
  :class:`~gateway.agents.resolver.WebhookRoute`: who answers (gateway/agents/resolver.py);
* :class:`~gateway.after_call.ledger.CallLedger`, :func:`~gateway.after_call.ledger.recording_relpath`:
  the call's row, recording and events (gateway/after_call/ledger.py);
* :class:`~gateway.after_call.worker.PostCallWorker` (gateway/after_call/worker.py);
* :class:`~gateway.after_call.runtime.DatabaseHooks`, :class:`~gateway.after_call.runtime.DatabaseRuntime`
  (gateway/after_call/runtime.py).
"""

from gateway.after_call.ledger import recording_relpath
from gateway.after_call.runtime import DatabaseHooks, DatabaseRuntime
from gateway.after_call.worker import PostCallWorker
from gateway.agents.resolver import render_prompt

__all__ = ["DatabaseHooks", "DatabaseRuntime", "PostCallWorker", "recording_relpath", "render_prompt"]
