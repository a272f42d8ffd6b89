"""One Silero run for every call's frame: the process-wide VAD batcher.

Each call's :class:`~gateway.conversation.vad.VADStream` hands its completed frame (input row and
LSTM state) to :meth:`VADBatcher.score` and awaits the probability. The first frame of a batch
arms one timer (``wait_s``, ``GATEWAY_VAD_BATCH_WAIT_MS``); when it fires, or once ``max_batch``
frames (or a frame of every live stream: no other can join) are waiting, every waiting frame is
scored in one ONNX run and each stream's state is set from its row. So one call alone, or a call
working through a backlog while the others are idle, never waits for the timer. No task is created
per frame: one timer handle per batch and one future per frame.
A stream whose wait was cancelled (its call ended) is skipped when the results come back; the
others are unaffected. Runs on the event loop's thread (a batch of 64 takes ~4 ms of CPU).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

RunBatch = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
"""``(x (B, 576), h (1, B, 128), c (1, B, 128)) → (probabilities (B,), hn, cn)``, all float32."""


class BatchedStream(Protocol):
    """What the batcher reads and writes on a stream: its model input row and LSTM state."""

    x: np.ndarray
    """float32 (576,): 64 context + 512 frame samples."""
    h: np.ndarray
    """float32 (1, 1, 128)."""
    c: np.ndarray
    """float32 (1, 1, 128)."""


class VADBatcher:
    """Collects frames from every stream of the process and scores them in one run.

    Args:
        run: the model (:meth:`gateway.conversation.vad.SileroVAD.run`).
        wait_ms: how long the first frame of a batch waits for others (0: the streams score
            their frames alone, at once, and never call :meth:`score`).
        max_batch: a batch this full runs at once, without waiting for the timer.

    Attributes:
        runs: batches run so far; ``frames``: frames scored by them (``frames / runs`` is the mean batch).
    """

    def __init__(self, run: RunBatch, wait_ms: int = 0, max_batch: int = 64) -> None:
        self._run = run
        self.wait_s = wait_ms / 1000
        self.max_batch = max(max_batch, 1)
        self._streams: list[BatchedStream] = []
        self._futures: list[asyncio.Future[float]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._live: weakref.WeakSet[BatchedStream] = weakref.WeakSet()
        self.runs = 0
        self.frames = 0

    @property
    def waiting(self) -> int:
        """Frames waiting for the next run."""
        return len(self._streams)

    def register(self, stream: BatchedStream) -> None:
        """Count ``stream`` among the live ones (until it is garbage): once each live stream has a
        frame waiting, the batch runs without waiting for the timer."""
        self._live.add(stream)

    def score(self, stream: BatchedStream) -> asyncio.Future[float]:
        """Queue ``stream``'s frame (``stream.x`` with its state); the future's result is its
        speech probability, set once the batch ran (``stream.h``/``c`` updated by then).

        Raises (through the future): whatever the model raised for the batch.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[float] = loop.create_future()
        self._streams.append(stream)
        self._futures.append(future)
        if len(self._streams) >= min(self.max_batch, len(self._live)):
            self.flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.wait_s, self.flush)
        return future

    def flush(self) -> None:
        """Score every waiting frame now (the timer's callback)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        streams, futures = self._streams, self._futures
        if not streams:
            return
        self._streams, self._futures = [], []
        try:
            x = np.stack([s.x for s in streams])
            h = np.concatenate([s.h for s in streams], axis=1)
            c = np.concatenate([s.c for s in streams], axis=1)
            probs, hn, cn = self._run(x, h, c)
        except Exception as exc:
            log.exception("VAD batch of %d failed", len(streams))
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        self.runs += 1
        self.frames += len(streams)
        for i, (stream, future) in enumerate(zip(streams, futures, strict=True)):
            if future.done():  # cancelled: that call is over, its state no longer matters
                continue
            stream.h, stream.c = hn[:, i : i + 1], cn[:, i : i + 1]
            future.set_result(float(probs[i]))
