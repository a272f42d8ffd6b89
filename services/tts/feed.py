"""Queue one stream's segments for synthesis a few at a time, so that no input is too long to admit.

The scheduler's bound (``TTS_MAX_QUEUE``) counts the segments of every caller. Submitting all
segments of a request up front meant that an input of more sentences than the bound got 503
"retry shortly" even on an idle server (a retry could never succeed), and that one long input
could take every slot. A :class:`SegmentFeed` instead keeps at most ``lookahead`` of its segments
queued or running, and submits the next ones as the consumer takes the audio of earlier ones (and
the queue has room). An idle server therefore admits an input of any length, and a long input
holds at most ``lookahead`` slots; it is refused only when the queue is full before any of its
segments got in (:meth:`SegmentFeed.admit`), which is a real overload and worth a retry.

Consumers take the audio in order with :meth:`SegmentFeed.result`; that is also the back-pressure:
a client that reads slowly never has more than ``lookahead`` segments synthesised ahead of it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from services.tts.normalize import normalize_for_speech
from services.tts.scheduler import Scheduler, StreamTicket
from shared.errors import QueueFullError

__all__ = ["LOOKAHEAD_SEGMENTS", "FeedItem", "SegmentFeed"]

P = TypeVar("P")

LOOKAHEAD_SEGMENTS = 16
"""Default ``lookahead``: segments of one request or WebSocket queued or running at once. Enough to
keep a GPU batch of one stream full and to cover a typical reply; a quarter of the default
``TTS_MAX_QUEUE``, so a few long inputs cannot take every slot."""


@dataclass(eq=False)
class FeedItem:
    """One segment of a feed.

    Attributes:
        text: the segment as the client sent it.
        spoken: the normalised text that is synthesised ("" when nothing is speakable: no job).
        pause: whether the synthesis ends with the inter-sentence pause.
        future: the scheduler's future of float32 (n,) 24 kHz audio, once submitted.
    """

    text: str
    spoken: str
    pause: bool = True
    future: asyncio.Future[np.ndarray] | None = None


class SegmentFeed(Generic[P]):
    """Submits a stream's segments to ``scheduler`` in order, at most ``lookahead`` unfinished at once.

    Args:
        scheduler: the shared synthesis scheduler.
        make_job: ``(spoken_text, pause) -> payload`` for the scheduler.
        lookahead: most segments of this feed queued or running at once (≥ 1).
        ticket: the stream's fairness ticket (a new one by default); it must not be shared with
            another feed, since its ``pending`` count is the feed's unfinished segments.
        lang: the voice's language, for normalising the text (``normalize_for_speech``).
    """

    def __init__(
        self,
        scheduler: Scheduler[P, np.ndarray],
        make_job: Callable[[str, bool], P],
        lookahead: int = LOOKAHEAD_SEGMENTS,
        ticket: StreamTicket | None = None,
        lang: str = "en-us",
    ) -> None:
        self.scheduler = scheduler
        self.lang = lang
        self.make_job = make_job
        self.lookahead = max(1, lookahead)
        self.ticket = ticket or StreamTicket()
        self._waiting: deque[FeedItem] = deque()
        self._live: set[asyncio.Future[np.ndarray]] = set()

    @property
    def idle(self) -> bool:
        """Nothing of this feed is waiting, queued or running."""
        return not self._waiting and self.ticket.pending == 0

    @property
    def stalled(self) -> bool:
        """Segments wait to be submitted, but none of the feed's is queued or running."""
        return bool(self._waiting) and self.ticket.pending == 0

    def add(self, text: str, pause: bool = True) -> FeedItem:
        """Normalise ``text`` and append it (not yet submitted: call :meth:`admit` or :meth:`top_up`).

        Returns:
            the item to pass to :meth:`result` (``spoken`` is "" if nothing is speakable).
        """
        item = FeedItem(text, normalize_for_speech(text, self.lang), pause)
        if item.spoken:
            self._waiting.append(item)
        return item

    def top_up(self) -> None:
        """Submit waiting segments, oldest first, while fewer than ``lookahead`` are unfinished and
        the queue has room. Never raises."""
        while self._waiting and self.ticket.pending < self.lookahead:
            try:
                self._submit(self._waiting[0])
            except QueueFullError:
                return

    def admit(self) -> None:
        """:meth:`top_up`, then check that the feed got into the queue.

        Raises:
            QueueFullError: segments wait but none of the feed's is queued or running: the queue
                was full (a real overload; the caller may retry). The feed is left as it was;
                :meth:`cancel` it to drop the segments.
        """
        self.top_up()
        if self.stalled:
            raise QueueFullError(self.scheduler.depth, what="synthesis")

    async def result(self, item: FeedItem) -> np.ndarray:
        """The audio of ``item``: float32 (n,) at 24 kHz ((0,) when nothing is speakable).

        Items must be awaited in the order they were added. An item not yet submitted is submitted
        now, waiting for room in the queue if needed; then later items are topped up.

        Raises:
            asyncio.CancelledError: the item was cancelled (:meth:`cancel`) or the caller was.
            Exception: whatever the synthesis raised.
        """
        if not item.spoken:
            return np.zeros(0, dtype=np.float32)
        while item.future is None:
            if not self._waiting or self._waiting[0] is not item:
                raise asyncio.CancelledError("the segment was dropped")
            try:
                self._submit(item)
            except QueueFullError:
                await self.scheduler.wait_for_room()
        self.top_up()
        audio = await item.future
        self.top_up()
        return audio

    def cancel(self) -> list[FeedItem]:
        """Drop every segment not yet taken: cancel queued and running ones, forget waiting ones.

        Returns:
            the waiting (never submitted) items that were dropped, oldest first.
        """
        for fut in list(self._live):
            fut.cancel()
        dropped = list(self._waiting)
        self._waiting.clear()
        return dropped

    def _submit(self, item: FeedItem) -> None:
        """Submit the oldest waiting item (``item``). Raises QueueFullError when there is no room."""
        fut = self.scheduler.submit(self.make_job(item.spoken, item.pause), self.ticket)
        self._waiting.popleft()
        item.future = fut
        self._live.add(fut)
        fut.add_done_callback(self._live.discard)
