"""A RAM cache of llama.cpp prompt states for the CPU stand-in (``LLM_PROMPT_CACHE_MB``).

llama.cpp keeps the KV cache of its last prompt only, and the stand-in has one slot. When a call
ends, its post-call extraction takes that slot with another prompt; the next call's first turn
then prefills the whole system prompt again (seconds on two cores, docs/benchmarks.md, issue 13).
llama-cpp-python can save the model's state after each completion and, for a new prompt, restore
the saved state with the longest common token prefix (``Llama.set_cache``: the lookup is in
``Llama._create_completion``, ``Llama.generate`` then trims the KV cache to the common prefix and
evaluates only the rest). This module installs that cache with two fixes:

* **Lean states.** ``Llama.save_state`` copies ``Llama.scores[:n_tokens]`` along with the KV
  cache: up to ``n_batch`` × vocabulary floats (311 MB for Qwen2.5's 152k tokens), which the
  cache's byte count leaves out, against ~4 MB of KV state for a 340-token prompt. With
  ``logits_all`` off that array is never written (sampling happens in llama.cpp's sampler), so
  the saved state keeps one row of it: saving takes milliseconds instead of 0.2–0.5 s, and
  ``load_state`` broadcasts that row back.
* **Counted and logged.** The capacity counts every byte a state holds; each save and restore is
  logged with its size.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from llama_cpp import Llama, LlamaRAMCache, LlamaState

__all__ = ["PromptStateCache", "install_prompt_cache"]

log = logging.getLogger("llm.prompt_cache")

_MB = 1024 * 1024


def _state_bytes(state: LlamaState) -> int:
    """RAM a saved state holds: llama.cpp's state (KV cache, last logits) plus the numpy copies."""
    return int(state.llama_state_size) + int(state.scores.nbytes) + int(state.input_ids.nbytes)


class PromptStateCache(LlamaRAMCache):
    """LRU cache of llama.cpp states keyed by their tokens, at most ``capacity_bytes`` in all.

    A state larger than the capacity is not kept (nor does it evict the others).
    """

    @property
    def cache_size(self) -> int:
        """Bytes held by all states."""
        return sum(_state_bytes(s) for s in self.cache_state.values())

    def __setitem__(self, key: Sequence[int], value: LlamaState) -> None:
        """Store ``value`` under its tokens ``key``, evicting the least recently used states."""
        size = _state_bytes(value)
        if size > self.capacity_bytes:
            log.info("prompt cache: a state of %d tokens (%.1f MB) exceeds the capacity", len(key), size / _MB)
            return
        super().__setitem__(key, value)
        log.info(
            "prompt cache: saved a state of %d tokens, %.1f MB; %d states, %.1f of %.0f MB",
            len(key),
            size / _MB,
            len(self.cache_state),
            self.cache_size / _MB,
            self.capacity_bytes / _MB,
        )


def _lean_save_state(llama: Llama, save: Callable[[], LlamaState]) -> LlamaState:
    """``llama.save_state()`` with one row of ``llama.scores`` instead of ``n_tokens`` rows."""
    scores = llama.scores
    llama.scores = scores[:1]  # save_state copies scores[:n_tokens]
    try:
        return save()
    finally:
        llama.scores = scores


def _logged_load_state(load: Callable[[LlamaState], None], state: LlamaState) -> None:
    """``llama.load_state(state)``, logged with its duration."""
    t0 = time.perf_counter()
    load(state)
    log.info(
        "prompt cache: restored a state of %d tokens in %.0f ms",
        state.n_tokens,
        (time.perf_counter() - t0) * 1000,
    )


def install_prompt_cache(llama: Llama, capacity_bytes: int) -> PromptStateCache:
    """Give ``llama`` a :class:`PromptStateCache` of ``capacity_bytes`` and lean state saving.

    Raises:
        ValueError: ``llama`` keeps the logits of every token (``logits_all``), which a lean
            state would lose.
    """
    if llama._logits_all:
        raise ValueError("the prompt cache's lean states need logits_all=False")
    cache = PromptStateCache(capacity_bytes)
    llama.set_cache(cache)
    save, load = llama.save_state, llama.load_state
    # Instance attributes shadow the methods for this model only; llama-cpp-python calls
    # self.save_state() / self.load_state() from _create_completion.
    llama.save_state = lambda: _lean_save_state(llama, save)  # type: ignore[method-assign]
    llama.load_state = lambda state: _logged_load_state(load, state)  # type: ignore[method-assign]
    return cache
