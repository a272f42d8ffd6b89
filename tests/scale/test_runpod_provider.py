"""The RunPod node provider (services/cluster/runpod/) driven by Ray's real autoscaler, against a local
fake of RunPod's REST API (tools/fake_runpod.py: RunPod's routes, bodies and pod states).

Real: Ray's ``StandardAutoscaler`` (its update loop, resource-demand scheduler, node launcher and
idle-node termination), loaded from a cluster config with the ``external`` provider type, and the
provider's HTTP calls. Scripted: the cluster's load (``LoadMetrics``: a pending GPU demand, then a
worker idle for 10 minutes) and the GCS's drain answer. Nothing real is called.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ray.autoscaler._private.autoscaler import StandardAutoscaler
from ray.autoscaler._private.load_metrics import LoadMetrics
from ray.autoscaler.tags import TAG_RAY_NODE_KIND, TAG_RAY_USER_NODE_TYPE

from services.cluster.runpod.api import API_KEY_ENV, RunPodAPI, RunPodError
from services.cluster.runpod.provider import RunPodNodeProvider
from tests.component.fakes import ServerThread
from tools.fake_runpod import FakeRunPod

KEY = "test-runpod-key"
POD = {"imageName": "switchboard/ray-worker:dev", "gpuTypeIds": ["NVIDIA H100 80GB HBM3"], "gpuCount": 1}
HEAD_IP = "172.16.0.1"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRunPod]:
    monkeypatch.setenv(API_KEY_ENV, KEY)
    runpod = FakeRunPod(KEY)
    with ServerThread(runpod.app) as server:
        runpod.url = server.url  # type: ignore[attr-defined]
        yield runpod


def provider_config(fake: FakeRunPod, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "type": "external",
        "module": "services.cluster.runpod.provider.RunPodNodeProvider",
        "api_url": fake.url,  # type: ignore[attr-defined]
        "head_address": HEAD_IP,
        "state_path": str(tmp_path / "runpod-state.json"),
        "min_standby": 1,
        "max_standby": 2,
        "standby_node_type": "gpu_worker",
        "standby_node_config": POD,
        "standby_warm_s": 0,
        "disable_node_updaters": True,
        "disable_launch_config_check": True,
        **overrides,
    }


def cluster_config(fake: FakeRunPod, tmp_path: Path, **provider: Any) -> dict[str, Any]:
    """A cluster config as in deploy/ray/cluster.yaml, with the fake's URL (no SSH, no setup commands)."""
    empty: dict[str, Any] = {k: [] for k in ("cluster_synced_files", "rsync_exclude", "rsync_filter")}
    empty |= {k: [] for k in ("initialization_commands", "setup_commands", "head_setup_commands")}
    empty |= {k: [] for k in ("worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")}
    return {
        "cluster_name": "t",
        "max_workers": 2,
        "idle_timeout_minutes": 5,
        "upscaling_speed": 1.0,
        "provider": provider_config(fake, tmp_path, **provider),
        "auth": {"ssh_user": "root"},
        "available_node_types": {
            "head": {"resources": {"CPU": 4}, "node_config": {}, "min_workers": 0, "max_workers": 0},
            "gpu_worker": {"resources": {"GPU": 1, "CPU": 16}, "node_config": POD, "min_workers": 0, "max_workers": 2},
        },
        "head_node_type": "head",
        "file_mounts": {},
        "file_mounts_sync_continuously": False,
        **empty,
    }


class Gcs:
    """The GCS's answer to the autoscaler's drain request (it drains what it is asked to)."""

    def drain_nodes(self, node_ids: Any, timeout: Any = None) -> Any:
        return node_ids


def settle(autoscaler: StandardAutoscaler, rounds: int = 3) -> None:
    """Run autoscaler updates, letting its launcher thread work in between."""
    for _ in range(rounds):
        autoscaler.update()
        time.sleep(0.3)


def statuses(fake: FakeRunPod) -> dict[str, int]:
    out: dict[str, int] = {}
    for pod in fake.pods.values():
        out[pod["desiredStatus"]] = out.get(pod["desiredStatus"], 0) + 1
    return out


def test_the_autoscaler_starts_a_stopped_spare_keeps_one_and_stops_an_idle_pod(
    fake: FakeRunPod, tmp_path: Path
) -> None:
    config = cluster_config(fake, tmp_path)
    metrics = LoadMetrics()
    autoscaler = StandardAutoscaler(lambda: copy.deepcopy(config), metrics, Gcs(), update_interval_s=0)
    settle(autoscaler)
    assert statuses(fake) == {"EXITED": 1}  # standby kept: one warm spare, created then stopped
    (spare,) = fake.by_status("EXITED")
    creates = fake.calls.count(("POST", "/pods"))

    metrics.update(HEAD_IP, b"head", {"CPU": 4}, {"CPU": 4}, 0, waiting_bundles=[{"GPU": 1}])  # a replica waits
    settle(autoscaler)
    assert ("POST", f"/pods/{spare['id']}/start") in fake.calls  # the stopped pod is preferred...
    assert fake.pods[spare["id"]]["desiredStatus"] == "RUNNING"
    assert fake.calls.count(("POST", "/pods")) == creates + 1  # ...and only the new spare is created
    assert statuses(fake) == {"RUNNING": 1, "EXITED": 1}

    metrics.update(HEAD_IP, b"head", {"CPU": 4}, {"CPU": 4}, 0, waiting_bundles=[])
    metrics.update(spare["publicIp"], b"worker", {"GPU": 1, "CPU": 16}, {"GPU": 1, "CPU": 16}, 600)  # idle 10 min
    settle(autoscaler)
    assert ("POST", f"/pods/{spare['id']}/stop") in fake.calls  # idle past idle_timeout_minutes: stopped
    assert ("DELETE", f"/pods/{spare['id']}") not in fake.calls  # kept as a spare (max_standby 2)
    assert statuses(fake) == {"EXITED": 2}


def test_a_failed_start_moves_on_to_another_pod(fake: FakeRunPod, tmp_path: Path) -> None:
    provider = RunPodNodeProvider(provider_config(fake, tmp_path, min_standby=2), "t")
    provider.non_terminated_nodes({})
    provider.non_terminated_nodes({})  # two spares, warmed and stopped
    first, second = (p["id"] for p in fake.by_status("EXITED"))
    fake.fail_starts = {first}  # its machine has no free GPU left
    tags = {TAG_RAY_NODE_KIND: "worker", TAG_RAY_USER_NODE_TYPE: "gpu_worker"}
    launched = provider.create_node(POD, tags, 1)
    assert list(launched) == [second]
    assert fake.calls[-2:] == [("POST", f"/pods/{first}/start"), ("POST", f"/pods/{second}/start")]
    assert provider.non_terminated_nodes({TAG_RAY_USER_NODE_TYPE: "gpu_worker"}) == [second]

    fake.fail_starts = {first}  # the last spare fails too: a new pod is created
    (created,) = provider.create_node(POD, tags, 1)
    assert fake.calls[-2:] == [("POST", f"/pods/{first}/start"), ("POST", "/pods")]
    assert fake.pods[created]["desiredStatus"] == "RUNNING" and created not in (first, second)


def test_no_pod_at_all_is_a_clear_error_and_the_head_is_reported(fake: FakeRunPod, tmp_path: Path) -> None:
    provider = RunPodNodeProvider(provider_config(fake, tmp_path, min_standby=0, max_start_attempts=2), "t")
    assert provider.non_terminated_nodes({}) == ["head"] and provider.internal_ip("head") == HEAD_IP
    fake.fail_creates = 2
    with pytest.raises(RunPodError, match="no gpu_worker pod started after 2 tries"):
        provider.create_node(POD, {TAG_RAY_USER_NODE_TYPE: "gpu_worker"}, 1)


def test_the_api_key_comes_from_the_environment(fake: FakeRunPod, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV)
    with pytest.raises(RunPodError, match=API_KEY_ENV):
        RunPodAPI(base_url=fake.url)  # type: ignore[attr-defined]
    with pytest.raises(RunPodError) as wrong:
        RunPodAPI("wrong-key", base_url=fake.url).list_pods()  # type: ignore[attr-defined]
    assert wrong.value.status == 401
