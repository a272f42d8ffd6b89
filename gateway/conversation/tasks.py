"""A call's tasks, with a close that always returns.

``asyncio.TaskGroup`` waits, unbounded, for every child to finish after it cancels them. A library
that swallows a ``CancelledError`` (redis-py 8.1 does so for some cancels that land inside a
command: ~6 of 40 in a writer loop of the session's shape) then keeps the group, the call, and
uvicorn's shutdown waiting forever. :class:`TaskScope` keeps the group's useful half (a task that
fails ends the scope's owner) and bounds the other: :meth:`TaskScope.aclose` cancels, cancels again
every ``recancel_s`` (a swallowed cancel is followed by a fresh one at the task's next ``await``),
and gives up on a task after ``timeout_s``, logging it, so the call always finishes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class TaskScope:
    """Owns a set of tasks; a task's unexpected exception is reported to ``on_error`` once.

    Args:
        label: prefix of task names and log lines (e.g. the CallSid).
        on_error: called with the task and its exception when a task raises anything but
            ``CancelledError`` (the session ends the call on it).
    """

    def __init__(self, label: str, on_error: Callable[[asyncio.Task[Any], BaseException], None] | None = None) -> None:
        self.label = label
        self.on_error = on_error
        self.tasks: set[asyncio.Task[Any]] = set()
        self.closing = False

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start ``coro`` as a task of this scope.

        Raises:
            RuntimeError: the scope is closing (the coroutine is closed, not run).
        """
        if self.closing:
            coro.close()
            raise RuntimeError(f"{self.label}: no new task {name!r} while closing")
        task = asyncio.get_running_loop().create_task(coro, name=f"{name}:{self.label}")
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self.on_error is not None:
            self.on_error(task, exc)

    async def aclose(
        self, timeout_s: float = 5.0, recancel_s: float = 0.1, keep: set[asyncio.Task[Any]] | None = None
    ) -> list[str]:
        """Cancel every task (but ``keep``) and wait at most ``timeout_s`` seconds for them to end.

        Returns:
            Names of the tasks still running at the deadline (abandoned: they are logged and
            left to the loop; the scope no longer waits for them).
        """
        self.closing = True
        deadline = time.monotonic() + timeout_s
        pending = {t for t in self.tasks if not t.done() and t not in (keep or set())}
        while pending:
            for task in pending:
                task.cancel()
            left = deadline - time.monotonic()
            if left <= 0:
                break
            _done, pending = await asyncio.wait(pending, timeout=min(recancel_s, left))
        names = sorted(t.get_name() for t in pending)
        if names:
            log.error(
                "%s: %d task(s) ignored cancellation for %.1fs and were abandoned: %s",
                self.label,
                len(names),
                timeout_s,
                names,
            )
        return names


async def wait_bounded(task: asyncio.Task[Any], timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` seconds for ``task`` to end by itself; cancel it (bounded) if not.

    Returns:
        ``True`` if the task ended within the bound (by itself or by the cancel).
    """
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if done:
        return True
    deadline = time.monotonic() + 1.0
    while not task.done() and time.monotonic() < deadline:
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    return task.done()
