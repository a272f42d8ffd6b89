"""A local fake of RunPod's REST API for pods, for tests and for trying the node provider without an account.

Routes, bodies and states as RunPod documents them (docs.runpod.io/api-reference, base
``https://rest.runpod.io/v1``, ``Authorization: Bearer <key>``): ``GET /pods`` (``name``,
``desiredStatus`` filters), ``POST /pods`` (create and deploy: ``desiredStatus`` ``RUNNING``),
``GET /pods/{podId}``, ``POST /pods/{podId}/start``, ``POST /pods/{podId}/stop`` (``EXITED``),
``DELETE /pods/{podId}`` (``TERMINATED``). Pods are dicts shaped like RunPod's Pod object (``id``,
``name``, ``desiredStatus``, ``image``, ``env``, ``publicIp``, ``costPerHr``, ``lastStartedAt``).

Failure injection: ``fail_starts`` holds pod ids whose next start fails as RunPod's does when the
spare's machine has no free GPU; ``fail_creates`` counts creates to refuse.

    python -m tools.fake_runpod --port 8099 --key dev-key
"""

from __future__ import annotations

import argparse
import secrets
import string
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

NO_FREE_GPU = "There are not enough free GPUs on the host machine to start this pod."


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FakeRunPod:
    """The fake's state and its FastAPI app (:attr:`app`).

    Args:
        api_key: the only key accepted (401 otherwise).
        cost_per_hr: what every pod costs running, USD/hour.
    """

    def __init__(self, api_key: str = "test-runpod-key", cost_per_hr: float = 2.69) -> None:
        self.api_key = api_key
        self.cost_per_hr = cost_per_hr
        self.pods: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        """(method, path) of every authorised request, in order."""
        self.fail_starts: set[str] = set()
        self.fail_creates = 0
        self._ips = 0
        self.app = FastAPI(title="fake RunPod REST API")
        self.app.middleware("http")(self._auth)
        self.app.get("/pods")(self.list_pods)
        self.app.post("/pods")(self.create)
        self.app.get("/pods/{pod_id}")(self.get)
        self.app.post("/pods/{pod_id}/start")(self.start)
        self.app.post("/pods/{pod_id}/stop")(self.stop)
        self.app.delete("/pods/{pod_id}")(self.delete)

    async def _auth(self, request: Request, call_next: Any) -> Any:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        self.calls.append((request.method, request.url.path))
        return await call_next(request)

    def _pod(self, pod_id: str) -> dict[str, Any]:
        pod = self.pods.get(pod_id)
        if pod is None or pod["desiredStatus"] == "TERMINATED":
            raise HTTPException(404, f"pod {pod_id} not found")
        return pod

    def by_status(self, status: str) -> list[dict[str, Any]]:
        """Pods whose ``desiredStatus`` is ``status``."""
        return [p for p in self.pods.values() if p["desiredStatus"] == status]

    async def list_pods(self, name: str | None = None, desiredStatus: str | None = None) -> list[dict[str, Any]]:
        """``GET /pods``: every pod not terminated (filtered by exact name / status)."""
        pods = [p for p in self.pods.values() if p["desiredStatus"] != "TERMINATED"]
        return [p for p in pods if (name is None or p["name"] == name) and desiredStatus in (None, p["desiredStatus"])]

    async def create(self, request: Request) -> JSONResponse:
        """``POST /pods``: a new pod, deployed (``RUNNING``)."""
        body = await request.json()
        if self.fail_creates > 0:
            self.fail_creates -= 1
            return JSONResponse(
                {"error": "There are no longer any instances available with the requested specifications."},
                status_code=500,
            )
        pod_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(14))
        self._ips += 1
        pod = {
            "id": pod_id,
            "name": body.get("name") or "",
            "desiredStatus": "RUNNING",
            "image": body.get("imageName", ""),
            "env": body.get("env") or {},
            "gpu": {"id": (body.get("gpuTypeIds") or [""])[0], "count": body.get("gpuCount", 1)},
            "ports": body.get("ports") or [],
            "publicIp": f"10.0.0.{self._ips}",
            "costPerHr": str(self.cost_per_hr),
            "lastStartedAt": _now(),
            "lastStatusChange": f"Rented by User: {_now()}",
        }
        self.pods[pod_id] = pod
        return JSONResponse(pod, status_code=201)

    async def get(self, pod_id: str) -> dict[str, Any]:
        """``GET /pods/{podId}``."""
        return self._pod(pod_id)

    async def start(self, pod_id: str) -> JSONResponse:
        """``POST /pods/{podId}/start``: a stopped pod runs again (fails for ``fail_starts``)."""
        pod = self._pod(pod_id)
        if pod_id in self.fail_starts:
            self.fail_starts.discard(pod_id)
            return JSONResponse({"error": NO_FREE_GPU}, status_code=500)
        pod.update(desiredStatus="RUNNING", lastStartedAt=_now())
        return JSONResponse(pod)

    async def stop(self, pod_id: str) -> JSONResponse:
        """``POST /pods/{podId}/stop``."""
        pod = self._pod(pod_id)
        pod.update(desiredStatus="EXITED", lastStatusChange=f"Exited by user: {_now()}")
        return JSONResponse(pod)

    async def delete(self, pod_id: str) -> JSONResponse:
        """``DELETE /pods/{podId}``."""
        self._pod(pod_id)["desiredStatus"] = "TERMINATED"
        return JSONResponse(None)


def main() -> None:
    """Serve the fake on ``--port`` until Ctrl-C."""
    import uvicorn

    parser = argparse.ArgumentParser(description="A local fake of RunPod's REST API for pods")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--key", default="test-runpod-key", help="the accepted API key")
    args = parser.parse_args()
    uvicorn.run(FakeRunPod(args.key).app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
