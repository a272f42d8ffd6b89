"""Composition root of the CPU LLM stand-in (llama-cpp-python's OpenAI server)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.llm.config import LLMSettings
from shared.metrics import mount_metrics


def create_app(settings: LLMSettings | None = None) -> FastAPI:
    """Build llama-cpp-python's OpenAI-compatible app for the configured GGUF model.

    Adds ``GET /health`` (as vLLM has) and ``GET /metrics``. The model loads here, because
    llama-cpp-python loads in its ``create_app``; call this from uvicorn's factory mode.

    Requests queue: llama-cpp-python runs one completion at a time under a lock (no parallel
    slots), and ``interrupt_requests`` is off, so a new request waits for the one in flight
    instead of ending its stream early with ``[DONE]`` and no finish reason (its default).
    A queued stream already has its response headers and gets SSE pings every 15 s, so a
    client's read timeout above that does not expire while it waits. A queued request whose
    client has gone away is dropped before it generates (a non-streamed one already generating
    runs to its end).

    With ``prompt_cache_mb`` > 0 the model saves its state after each completion and a new
    prompt restores the one with the longest common prefix (:mod:`services.llm.prompt_cache`).

    Raises:
        FileNotFoundError: the GGUF file is missing (run ``make models``).
    """
    from llama_cpp.server.app import create_app as llama_create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    settings = settings or LLMSettings()
    if not Path(settings.model_path).is_file():
        raise FileNotFoundError(f"LLM model {settings.model_path!r} is missing; run `make models`")
    model = ModelSettings(
        model=settings.model_path,
        model_alias=settings.served_model_name,
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
        n_threads_batch=settings.n_threads_batch or settings.n_threads,
        chat_format=settings.chat_format or None,
        logits_all=settings.logits_all,
        verbose=False,
    )
    # interrupt_requests=True (llama-cpp-python's default) lets every new request, streamed or
    # not, cut the stream in flight: concurrent calls and post-call extraction then truncate
    # each other's replies without an error. Queue them instead.
    server = ServerSettings(host=settings.host, port=settings.port, interrupt_requests=False)
    app: FastAPI = llama_create_app(server_settings=server, model_settings=[model])
    if settings.prompt_cache_mb > 0:
        # ModelSettings(cache=True) would install llama-cpp-python's own LlamaRAMCache, whose
        # states carry a 311 MB logits copy each; ours is lean. The server keeps its model in a
        # module global, loaded by llama_create_app above.
        from llama_cpp.server import app as llama_app

        from services.llm.prompt_cache import install_prompt_cache

        assert llama_app._llama_proxy is not None
        install_prompt_cache(llama_app._llama_proxy(), settings.prompt_cache_mb * 1024 * 1024)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "model": settings.served_model_name}

    mount_metrics(app)
    return app
