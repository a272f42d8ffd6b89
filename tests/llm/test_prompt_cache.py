"""The stand-in's prompt-state cache (``services/llm/prompt_cache.py``): byte accounting, lean states,
and with the project's GGUF a restore that skips the prefill and answers as a cold prompt would."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from llama_cpp import Llama, LlamaState

from services.llm.config import LLMSettings
from services.llm.prompt_cache import PromptStateCache, install_prompt_cache

VOCAB = 1000


def _state(n_tokens: int, kv_bytes: int) -> LlamaState:
    return LlamaState(
        input_ids=np.arange(n_tokens, dtype=np.intc),
        scores=np.zeros((1, VOCAB), dtype=np.single),
        n_tokens=n_tokens,
        llama_state=b"\0" * kv_bytes,
        llama_state_size=kv_bytes,
        seed=0,
    )


def test_cache_counts_every_byte_and_evicts_the_least_recently_used() -> None:
    one = _state(10, 1000).scores.nbytes + 10 * 4 + 1000
    cache = PromptStateCache(capacity_bytes=2 * one + 10)
    cache[(1, 2, 3)] = _state(10, 1000)
    cache[(1, 2, 4)] = _state(10, 1000)
    assert cache.cache_size == 2 * one
    assert cache[(1, 2, 3, 9)].n_tokens == 10  # the longest prefix; now most recently used
    cache[(5, 6)] = _state(10, 1000)
    assert list(cache.cache_state) == [(1, 2, 3), (5, 6)]
    assert (7,) not in cache


def test_a_state_larger_than_the_cache_is_not_kept() -> None:
    cache = PromptStateCache(capacity_bytes=5000)
    cache[(1,)] = _state(10, 100)
    cache[(2,)] = _state(10, 10_000)
    assert list(cache.cache_state) == [(1,)]


@pytest.fixture(scope="module")
def llama() -> Llama:
    """The project's GGUF as the stand-in loads it (no server), with the prompt cache installed."""
    settings = LLMSettings()
    if not Path(settings.model_path).is_file():
        pytest.fail(f"{settings.model_path} is missing: run `make models` (make setup does)")
    model = Llama(
        model_path=settings.model_path,
        n_ctx=2048,
        n_threads=settings.n_threads,
        chat_format=settings.chat_format,
        logits_all=False,
        verbose=False,
    )
    install_prompt_cache(model, 64 * 1024 * 1024)
    return model


SYSTEM = "You are Sam, the receptionist of Acme Plumbing. " * 12
FIRST_TURN = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "My kitchen sink is leaking. Can someone come today?"},
]
OTHER = [{"role": "user", "content": "Extract the caller's name as JSON: my name is Ann Lee."}]


def _reply(llama: Llama, messages: list[dict[str, str]]) -> str:
    out = llama.create_chat_completion(messages, max_tokens=12, temperature=0.0)  # type: ignore[arg-type]
    return str(out["choices"][0]["message"]["content"])  # type: ignore[index]


def test_restored_state_skips_the_prefill_and_gives_the_same_reply(
    llama: Llama, caplog: pytest.LogCaptureFixture
) -> None:
    cold = _reply(llama, FIRST_TURN)
    state = next(iter(llama.cache.cache_state.values()))  # type: ignore[union-attr]
    assert state.scores.shape[0] == 1  # lean: one row of logits, not one per token
    _reply(llama, OTHER)  # takes the slot: the KV cache now holds another prompt
    with caplog.at_level(logging.INFO, logger="llm.prompt_cache"):
        again = _reply(llama, FIRST_TURN)
    assert any("restored a state of" in r.getMessage() for r in caplog.records)
    assert again == cold


def test_the_cache_refuses_a_model_that_keeps_all_logits() -> None:
    class AllLogits:
        _logits_all = True

    with pytest.raises(ValueError, match="logits_all"):
        install_prompt_cache(AllLogits(), 1024)  # type: ignore[arg-type]


def test_generation_and_prompt_processing_threads_are_separate_settings() -> None:
    """``LLM_N_THREADS`` decodes, ``LLM_N_THREADS_BATCH`` prefills (0: as many as decoding)."""
    from llama_cpp.server import app as llama_app

    from services.llm.app import create_app

    settings = LLMSettings()
    if not Path(settings.model_path).is_file():
        pytest.fail(f"{settings.model_path} is missing: run `make models`")
    create_app(settings.model_copy(update={"n_threads": 1, "n_threads_batch": 2, "prompt_cache_mb": 0}))
    assert llama_app._llama_proxy is not None
    llama = llama_app._llama_proxy()
    assert (llama.context_params.n_threads, llama.context_params.n_threads_batch) == (1, 2)
    create_app(settings.model_copy(update={"n_threads": 1, "n_threads_batch": 0, "prompt_cache_mb": 0}))
    llama = llama_app._llama_proxy()
    assert (llama.context_params.n_threads, llama.context_params.n_threads_batch) == (1, 1)
