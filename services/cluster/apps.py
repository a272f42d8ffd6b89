"""The STT and TTS services as Ray Serve applications: the same FastAPI apps, replicated and autoscaled.

Each application is one Serve deployment whose ingress is the service's own app, built on the
replica by its composition root (``create_app()``: the lifespan loads the model, the service's
cross-call batch scheduler runs inside the replica). Serve adds what one process cannot:
replicas across nodes, fractional GPUs (several replicas share a card, as the services share one
under compose), routing to the least-busy replica and autoscaling on ongoing requests
(docs.ray.io/en/latest/serve/autoscaling-guide.html). The HTTP and WebSocket routes are the
services' own (``/v1/audio/transcriptions/raw``, ``/v1/turn``, ``WS /v1/audio/speech/stream``…),
under the application's route prefix (``/stt``, ``/tts``): a gateway points
``GATEWAY_STT__URL`` at ``http://<serve>:8000/stt``.

Builders for a Serve config file (``deploy/ray/serve.yaml``, ``serve deploy``)::

    import_path: services.cluster.apps:stt_app
    args: {autoscaling_config: {...}, ray_actor_options: {num_gpus: 0.2}, env: {STT_DEVICE: cuda}}

``args`` are :class:`AppArgs`; ``env`` reaches the replica's settings (``STT_*``/``TTS_*``) through
the actor's ``runtime_env``. Every response carries ``x-serve-replica`` (the replica that served
it), for tests and load reports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, Field
from ray import serve
from ray.serve import Application

REPLICA_HEADER = "x-serve-replica"
"""Response header naming the Serve replica that answered."""


class AppArgs(BaseModel):
    """What a config file's ``args`` may set for one service (Serve deployment options)."""

    num_replicas: int | None = None
    """Fixed replica count (leave unset with ``autoscaling_config``)."""
    autoscaling_config: dict[str, Any] | None = None
    """Serve autoscaling: ``min_replicas``, ``max_replicas``, ``target_ongoing_requests``,
    ``upscale_delay_s``, ``downscale_delay_s``…"""
    max_ongoing_requests: int = 64
    """Requests one replica takes at once: high, so its own batch scheduler sees many calls."""
    ray_actor_options: dict[str, Any] = Field(default_factory=lambda: {"num_cpus": 1})
    """Resources of a replica: ``num_cpus``, ``num_gpus`` (fractional: 0.2 = five on a card), ``resources``."""
    env: dict[str, str] = Field(default_factory=dict)
    """The service's settings for its replicas (``STT_DEVICE=cuda``…)."""
    health_check_period_s: float = 10.0
    """How often Serve checks a replica (a dead one is replaced)."""
    graceful_shutdown_timeout_s: float = 20.0
    """How long a replica being removed may finish its requests."""


def _with_replica_header(build: Callable[[], FastAPI]) -> Callable[[], FastAPI]:
    """``build`` wrapped: the app answers with :data:`REPLICA_HEADER` (the replica's id)."""

    def builder() -> FastAPI:
        app = build()
        replica = serve.get_replica_context().replica_id.unique_id

        @app.middleware("http")
        async def name_the_replica(request: Request, call_next: Callable[[Request], Any]) -> Response:
            response: Response = await call_next(request)
            response.headers[REPLICA_HEADER] = replica
            return response

        return app

    return builder


def _stt_app() -> FastAPI:
    from services.stt.app import create_app

    return create_app()


def _tts_app() -> FastAPI:
    from services.tts.app import create_app

    return create_app()


def service_app(name: str, build: Callable[[], FastAPI], args: dict[str, Any] | None = None) -> Application:
    """A Serve application running the FastAPI app ``build()`` makes, as deployment ``name``.

    Raises:
        pydantic.ValidationError: ``args`` are not :class:`AppArgs`.
    """
    a = AppArgs.model_validate(args or {})
    actor_options = dict(a.ray_actor_options)
    if a.env:
        runtime_env = dict(actor_options.get("runtime_env") or {})
        runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **a.env}
        actor_options["runtime_env"] = runtime_env
    options: dict[str, Any] = {
        "name": name,
        "max_ongoing_requests": a.max_ongoing_requests,
        "ray_actor_options": actor_options,
        "health_check_period_s": a.health_check_period_s,
        "graceful_shutdown_timeout_s": a.graceful_shutdown_timeout_s,
    }
    if a.autoscaling_config is not None:
        options["autoscaling_config"] = a.autoscaling_config
    else:
        options["num_replicas"] = a.num_replicas or 1
    ingress = serve.ingress(_with_replica_header(build))()
    return serve.deployment(**options)(ingress).bind()


def stt_app(args: dict[str, Any] | None = None) -> Application:
    """The STT service (faster-whisper, Smart Turn's ``/v1/turn``) as a Serve application."""
    return service_app("stt", _stt_app, args)


def tts_app(args: dict[str, Any] | None = None) -> Application:
    """The TTS service (Kokoro, HTTP and WebSocket) as a Serve application."""
    return service_app("tts", _tts_app, args)
