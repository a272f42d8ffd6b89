"""The session tier: every test runs in virtual loop time (``looptime``) under a real-time bound.

Each test drives a whole :class:`~gateway.conversation.session.CallSession` over the fakes of
:mod:`tests.fakes`; a minute of call costs milliseconds, so the whole tier runs in seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent
VIRTUAL_END_S = 900
"""No test's loop time goes past this (a call that never ends fails instead of hanging)."""
REAL_TIMEOUT_S = 10
"""Real seconds any one test may take."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of this folder: virtual time (``looptime``), bounded in loop and real time."""
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.looptime(end=VIRTUAL_END_S, noop_cycles=4))
            item.add_marker(pytest.mark.timeout(REAL_TIMEOUT_S))
