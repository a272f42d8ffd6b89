"""A bounded LRU cache of synthesised segments: a phrase the agent says again is not synthesised again.

Voice agents repeat themselves: every call's greeting, the re-prompt, the apology, the goodbye, and
the openers a model starts most answers with ("Sure,", "Of course.", "You're welcome!"). Kokoro is
deterministic (the same phonemes, voice style row and speed give the same samples), so the audio of
a segment can be kept and handed out again at once: the first segment of such an answer then costs
the time the model takes to write it, not ~0.2 s + ~17 ms per character of synthesis on two CPU
cores (docs/benchmarks.md), and the GPU host saves the work of every greeting.

The key is the whole synthesis job (normalised text, voice, speed, trailing pause); only segments of
at most ``max_chars`` characters are kept, the entries are read-only float32 arrays, and the least
recently used ones are evicted once the cache holds more than ``max_bytes``. Production TTS front
ends keep the same kind of cache for repeated prompts (e.g. the "pre-cached filler phrases" of
hosted voice-agent platforms); here it is filled by use, so no phrase list has to be maintained.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import numpy as np

__all__ = ["PhraseCache"]

P = TypeVar("P")


class PhraseCache(Generic[P]):
    """LRU map of synthesis jobs to their audio, bounded in bytes.

    Args:
        key: the cache key of a job, or ``None`` when the job is not to be cached (too long).
        max_bytes: the most audio bytes kept (0 disables the cache).
        on_lookup: optional ``(hit: bool) -> None`` callback for metrics.
    """

    def __init__(
        self, key: Callable[[P], Hashable | None], max_bytes: int, on_lookup: Callable[[bool], None] | None = None
    ) -> None:
        self._key = key
        self.max_bytes = max(0, max_bytes)
        self._on_lookup = on_lookup
        self._entries: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, job: P) -> np.ndarray | None:
        """The cached audio of ``job`` (read-only float32 (n,)), or ``None``; counts a hit or a miss
        for cacheable jobs."""
        if not self.max_bytes:
            return None
        key = self._key(job)
        if key is None:
            return None
        audio = self._entries.get(key)
        if audio is None:
            self.misses += 1
        else:
            self._entries.move_to_end(key)
            self.hits += 1
        if self._on_lookup is not None:
            self._on_lookup(audio is not None)
        return audio

    def put(self, job: P, audio: np.ndarray) -> None:
        """Keep ``audio`` (float32 (n,)) for ``job`` if the job is cacheable and the audio fits;
        the array is made read-only (consumers must copy before writing)."""
        if not self.max_bytes:
            return
        key = self._key(job)
        if key is None or audio.nbytes > self.max_bytes or key in self._entries:
            return
        audio.setflags(write=False)
        self._entries[key] = audio
        self.bytes += audio.nbytes
        while self.bytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self.bytes -= old.nbytes
