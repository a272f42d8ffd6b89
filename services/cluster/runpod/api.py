"""A small client of RunPod's REST API for pods (https://rest.runpod.io/v1, docs.runpod.io/api-reference).

Routes (Bearer API key): ``GET /pods`` (list; ``name``/``desiredStatus`` filters), ``POST /pods``
(create and deploy), ``GET /pods/{podId}``, ``POST /pods/{podId}/start``, ``POST /pods/{podId}/stop``,
``DELETE /pods/{podId}``. A pod's ``desiredStatus`` is ``RUNNING``, ``EXITED`` (stopped: it keeps
its volume and costs only storage) or ``TERMINATED``. Synchronous (``httpx.Client``): the Ray
autoscaler calls its node provider from a thread.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import httpx

DEFAULT_URL = "https://rest.runpod.io/v1"
API_KEY_ENV = "RUNPOD_API_KEY"
"""Environment variable holding the API key (never in a config file)."""

RUNNING, EXITED, TERMINATED = "RUNNING", "EXITED", "TERMINATED"


class RunPodError(Exception):
    """RunPod refused or failed a request (``status``: HTTP status, ``None`` when unreachable)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Pod:
    """The fields of RunPod's Pod object the provider uses."""

    id: str
    name: str
    desired_status: str
    public_ip: str | None = None
    cost_per_hr: float = 0.0
    last_started_at: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Pod:
        """From RunPod's JSON (``id``, ``name``, ``desiredStatus``, ``publicIp``, ``costPerHr``…)."""
        return cls(
            id=str(body["id"]),
            name=str(body.get("name") or ""),
            desired_status=str(body.get("desiredStatus") or ""),
            public_ip=body.get("publicIp") or None,
            cost_per_hr=float(body.get("costPerHr") or 0.0),
            last_started_at=body.get("lastStartedAt"),
            env=dict(body.get("env") or {}),
        )


class RunPodAPI:
    """RunPod pods over REST.

    Args:
        api_key: the API key (default: ``$RUNPOD_API_KEY``).
        base_url: the API's base URL (tests: a local fake, :mod:`tools.fake_runpod`).
        timeout_s: per request, seconds.

    Raises:
        RunPodError: no API key.
    """

    def __init__(self, api_key: str | None = None, base_url: str = DEFAULT_URL, timeout_s: float = 30.0) -> None:
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
        if not key:
            raise RunPodError(f"no RunPod API key: set {API_KEY_ENV}")
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=timeout_s
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RunPodError(f"{method} {path}: {exc!r}") from exc
        if resp.status_code >= 400:
            raise RunPodError(f"{method} {path}: {resp.status_code} {resp.text[:300]}", resp.status_code)
        return resp.json() if resp.content else None

    def list_pods(self, **filters: str) -> list[Pod]:
        """``GET /pods`` (``name=…``, ``desiredStatus=…``)."""
        return [Pod.from_json(p) for p in self._call("GET", "/pods", params=filters)]

    def get(self, pod_id: str) -> Pod:
        """``GET /pods/{podId}``."""
        return Pod.from_json(self._call("GET", f"/pods/{pod_id}"))

    def create(self, spec: dict[str, Any]) -> Pod:
        """``POST /pods``: create and deploy a pod (``spec``: RunPod's create body, ``name`` included)."""
        return Pod.from_json(self._call("POST", "/pods", json=spec))

    def start(self, pod_id: str) -> None:
        """``POST /pods/{podId}/start`` (a stopped pod; fails when its machine has no free GPU)."""
        self._call("POST", f"/pods/{pod_id}/start")

    def stop(self, pod_id: str) -> None:
        """``POST /pods/{podId}/stop``: the pod keeps its disk and volume, and stops costing GPU time."""
        self._call("POST", f"/pods/{pod_id}/stop")

    def delete(self, pod_id: str) -> None:
        """``DELETE /pods/{podId}``: terminate the pod for good."""
        self._call("DELETE", f"/pods/{pod_id}")

    def close(self) -> None:
        """Close the HTTP client."""
        self.http.close()
