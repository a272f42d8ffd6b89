"""``GET /ready`` and ``GET /gpu`` of the gateway: the whole stack's readiness and GPUs in one answer.

``/health`` (in :mod:`gateway.app`) says the gateway process answers; ``/ready`` asks everything a
call needs, at once and bounded (``CHECK_TIMEOUT_S`` each): STT's and TTS's ``/ready`` (model
loaded and warmed up), the LLM server's ``/health`` (vLLM's and the llama.cpp stand-in's), Redis
``PING`` and, with the database on, ``SELECT 1``. 200 when all answer, else 503 with what failed,
so a load balancer or ``docker compose --wait`` can hold calls back. ``/gpu`` gathers the model
services' ``/gpu`` (:class:`shared.gpu.GPUInfo`: device, memory used/total MiB, utilisation %);
the gateway's own models (Silero VAD, Smart Turn) run on its CPU.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.config import GatewaySettings

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_S = 2.0


def _root(url: str) -> str:
    """An OpenAI base URL's server root (``http://llm:8000/v1`` → ``http://llm:8000``)."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


async def _timed(name: str, probe: Any) -> tuple[str, dict[str, Any]]:
    """Run one probe (a coroutine returning ``None`` or raising); its result with its latency, ms."""
    t0 = time.monotonic()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await probe
        result: dict[str, Any] = {"ok": True}
    except Exception as exc:
        result = {"ok": False, "error": str(exc) or type(exc).__name__}
    result["latency_ms"] = round((time.monotonic() - t0) * 1000, 1)
    return name, result


async def _http_ok(client: httpx.AsyncClient, url: str) -> None:
    resp = await client.get(url)
    if resp.status_code != 200:
        raise RuntimeError(f"{url} answered {resp.status_code}: {resp.text[:200]}")


@router.get("/ready", responses={503: {"description": "a service a call needs is not ready"}})
async def ready(request: Request) -> JSONResponse:
    """``{"ready": bool, "checks": {stt|tts|llm|redis|database: {ok, latency_ms, error?}}}``; 503 unless all are ok."""
    settings: GatewaySettings = request.app.state.settings
    deps = getattr(request.app.state, "deps", None)
    async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_S) as client:
        probes = [
            _timed("stt", _http_ok(client, f"{settings.stt.url.rstrip('/')}/ready")),
            _timed("tts", _http_ok(client, f"{settings.tts.url.rstrip('/')}/ready")),
            _timed("llm", _http_ok(client, f"{_root(settings.llm.url)}/health")),
        ]
        redis = getattr(getattr(deps, "store", None), "redis", None)
        if redis is not None:
            probes.append(_timed("redis", redis.ping()))
        runtime = getattr(request.app.state, "db_runtime", None)
        if runtime is not None:
            probes.append(_timed("database", _select_one(runtime)))
        checks = dict(await asyncio.gather(*probes))
    ok = all(c["ok"] for c in checks.values())
    return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)


async def _select_one(runtime: Any) -> None:
    from sqlalchemy import text

    async with runtime.db.sessions() as s:
        await s.execute(text("SELECT 1"))


@router.get("/gpu")
async def gpu(request: Request) -> dict[str, Any]:
    """Each model service's ``/gpu`` (or ``{"error": …}``), and the gateway's own device (``cpu``)."""
    settings: GatewaySettings = request.app.state.settings

    async def fetch(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
        try:
            resp = await client.get(url)
            resp.raise_for_status()
            return dict(resp.json())
        except Exception as exc:
            return {"error": str(exc) or type(exc).__name__}

    async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_S + 5) as client:  # nvidia-smi may take a while
        stt, tts = await asyncio.gather(
            fetch(client, f"{settings.stt.url.rstrip('/')}/gpu"), fetch(client, f"{settings.tts.url.rstrip('/')}/gpu")
        )
    return {"gateway": {"device": "cpu", "models": ["silero-vad", "smart-turn"]}, "stt": stt, "tts": tts}
