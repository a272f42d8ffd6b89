"""deploy/ray/: the Serve configs and the cluster config are what Ray itself accepts, and say the same
things as the rest of the deployment (the served model id, the GPU pod spec of spares and workers)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import ROOT, shellcheck_binary
from ray._common.utils import import_attr
from ray.autoscaler._private.util import validate_config
from ray.serve.schema import ServeDeploySchema

from services.cluster.apps import AppArgs
from shared.config import DEFAULT_MODEL_ID

RAY = ROOT / "deploy" / "ray"


def load(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((RAY / name).read_text()))


@pytest.mark.parametrize("name", ["serve.yaml", "serve.local.yaml"])
def test_serve_configs_are_valid_and_build_from_the_services(name: str) -> None:
    config = load(name)
    ServeDeploySchema.model_validate(config)
    apps = {a["name"]: a for a in config["applications"]}
    for service in ("stt", "tts"):
        app = apps[service]
        assert app["route_prefix"] == f"/{service}"
        assert callable(import_attr(app["import_path"]))
        AppArgs.model_validate(app["args"])  # the builder's arguments


def test_the_gpu_serve_config_shares_cards_and_serves_the_gateways_model() -> None:
    apps = {a["name"]: a for a in load("serve.yaml")["applications"]}
    for service in ("stt", "tts"):
        assert 0 < apps[service]["args"]["ray_actor_options"]["num_gpus"] < 1  # fractional: they share a card
        assert apps[service]["args"]["autoscaling_config"]["max_replicas"] > 1
    llm = apps["llm"]
    assert llm["import_path"] == "ray.serve.llm:build_openai_app" and llm["route_prefix"] == "/llm"
    (model,) = llm["args"]["llm_configs"]
    assert model["model_loading_config"]["model_id"] == DEFAULT_MODEL_ID  # what GATEWAY_LLM__MODEL asks for
    assert model["engine_kwargs"]["enable_prefix_caching"] is True


def test_the_cluster_config_is_valid_and_its_provider_loads() -> None:
    config = load("cluster.yaml")
    validate_config(config)
    provider = config["provider"]
    assert provider["type"] == "external"
    module, _, cls = provider["module"].rpartition(".")
    assert import_attr(f"{module}.{cls}").__name__ == "RunPodNodeProvider"
    worker = config["available_node_types"][provider["standby_node_type"]]
    assert worker["node_config"] == provider["standby_node_config"]  # spares are the workers' pods
    assert config["idle_timeout_minutes"] == 5 and provider["min_standby"] >= 1
    assert provider["disable_node_updaters"] is True  # pods join by themselves (pod_entrypoint.sh)
    assert not {k for k in provider if "key" in k.lower() or "token" in k.lower()}  # the API key: $RUNPOD_API_KEY


def test_the_pod_entrypoint_is_shellcheck_clean() -> None:
    script: Path = RAY / "pod_entrypoint.sh"
    proc = subprocess.run([str(shellcheck_binary()), str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout
