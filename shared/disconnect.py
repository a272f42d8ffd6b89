"""Cancel a request's work when its HTTP client goes away: one helper for the STT and TTS services.

After vLLM's ``with_cancellation`` / ``listen_for_disconnect`` (vllm/entrypoints/utils.py): the
work and a listener for ``http.disconnect`` race; whichever ends first wins, the other is cancelled.
A function rather than vLLM's decorator, because the STT handlers read the body themselves, and the
listener may only start once the body is read (it consumes the request's ASGI messages).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client went away before the work finished; the work was cancelled and has ended."""


async def listen_for_disconnect(request: Request) -> None:
    """Return when the client disconnects. Call only once the request body has been read."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``; if the client disconnects first, cancel it and raise :class:`ClientDisconnected`.

    The cancelled work has finished (its ``finally`` blocks have run) when this raises, and whatever
    it ended with is retrieved, so asyncio logs no "exception was never retrieved" for it: nobody is
    left to tell.

    Raises:
        ClientDisconnected: the client went away first.
        Exception: whatever ``work`` raised, if it finished first.
    """
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(listen_for_disconnect(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # the handler itself was cancelled (server shutting down)
        task.cancel()
        watch.cancel()
        raise
    watch.cancel()
    if task.done():
        return task.result()
    if not watch.cancelled():
        watch.exception()  # a failed ASGI channel means the client is gone all the same
    task.cancel()
    # cancel() only asks: the task ends at its next step; wait for it before reading it.
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()
    raise ClientDisconnected("the client disconnected")
