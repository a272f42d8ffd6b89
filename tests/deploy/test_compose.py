"""compose.yaml (CPU) and compose.gpu.yaml (NVIDIA override), checked offline with Compose v2."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import (
    BASE,
    GPU,
    HTTP_PORTS,
    ONE_SHOT_JOBS,
    PY_SERVICES,
    ROOT,
    compose_binary,
    final_stage,
    makefile_commands,
    raw_yaml,
    run_compose,
    vram_rows_from_docs,
)

from gateway.config import GatewaySettings
from gateway.config import env_names as gateway_env_names
from services.llm.config import DEFAULT_MODEL_ID, LLMSettings
from services.stt.config import STTSettings
from services.tts.config import TTSSettings

CONFIGS = {"base": [BASE], "gpu": [BASE, GPU]}


def test_compose_binary_is_v2_and_rejects_an_invalid_file(tmp_path: Path) -> None:
    version = subprocess.run([str(compose_binary()), "version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and "v2." in version.stdout, version.stdout + version.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("services:\n  x:\n    image: redis\n    healthcheck:\n      interval: not-a-duration\n")
    proc = run_compose(tmp_path, [bad], "config", "-q")
    assert proc.returncode != 0, "the validator accepted an invalid file: it is not really validating"


@pytest.mark.parametrize("name", CONFIGS)
def test_config_validates(name: str, tmp_path: Path) -> None:
    proc = run_compose(tmp_path, CONFIGS[name], "--profile", "monitoring", "config", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", f"compose warnings: {proc.stderr}"


def test_expected_services_and_profiles(base_config: dict[str, Any]) -> None:
    services = base_config["services"]
    assert set(services) == {"models", "redis", "stt", "tts", "llm", "gateway", "prometheus", "grafana"}
    for name in ("prometheus", "grafana"):
        assert services[name].get("profiles") == ["monitoring"], name
    for name in set(services) - {"prometheus", "grafana"}:
        assert not services[name].get("profiles"), f"{name} must start without a profile"


@pytest.mark.parametrize("name", CONFIGS)
def test_every_service_has_a_healthcheck(name: str, request: pytest.FixtureRequest) -> None:
    config = request.getfixturevalue(f"{name}_config")
    for svc, spec in config["services"].items():
        if svc in ONE_SHOT_JOBS:
            assert spec.get("restart") in ("no", None), f"{svc} is a one-shot job and must not restart"
            continue
        hc = spec.get("healthcheck")
        assert hc and not hc.get("disable"), f"{svc} has no healthcheck"
        assert hc["test"][0] in ("CMD", "CMD-SHELL") and len(hc["test"]) > 1, f"{svc}: {hc['test']}"
        assert spec.get("restart") == "unless-stopped", f"{svc}: restart policy {spec.get('restart')}"


@pytest.mark.parametrize("name", CONFIGS)
def test_http_healthchecks_probe_the_service_port(name: str, request: pytest.FixtureRequest) -> None:
    config = request.getfixturevalue(f"{name}_config")
    for svc, port in HTTP_PORTS.items():
        test = " ".join(config["services"][svc]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/health" in test, f"{svc}: {test}"
        assert test.split()[1] in ("python", "python3"), f"{svc}: the image has no curl; use python"


@pytest.mark.parametrize("name", CONFIGS)
def test_dependencies_wait_for_health(name: str, request: pytest.FixtureRequest) -> None:
    config = request.getfixturevalue(f"{name}_config")
    services = config["services"]
    for svc, spec in services.items():
        for dep, cond in (spec.get("depends_on") or {}).items():
            assert dep in services, f"{svc} depends on unknown {dep}"
            expected = "service_completed_successfully" if dep in ONE_SHOT_JOBS else "service_healthy"
            assert cond["condition"] == expected, f"{svc} -> {dep}: {cond['condition']}"
    assert set(services["gateway"]["depends_on"]) == {"redis", "stt", "tts", "llm"}


def test_models_job_feeds_the_services_read_only(base_config: dict[str, Any]) -> None:
    services = base_config["services"]
    job = services["models"]
    assert {"type": "volume", "source": "models", "target": "/app/models"}.items() <= job["volumes"][0].items()
    assert not job["volumes"][0].get("read_only")
    for svc in ("stt", "tts", "llm", "gateway"):
        mounts = {v["target"]: v for v in services[svc]["volumes"]}
        assert mounts["/app/models"]["source"] == "models" and mounts["/app/models"]["read_only"], svc
    for svc in ("stt", "tts", "llm"):
        assert services[svc]["depends_on"]["models"]["condition"] == "service_completed_successfully"


def test_named_volumes_and_redis_aof(base_config: dict[str, Any]) -> None:
    assert {"models", "data", "redis-data", "prometheus-data", "grafana-data"} <= set(base_config["volumes"])
    redis = base_config["services"]["redis"]
    cmd = redis["command"]
    assert cmd[0] == "redis-server"
    assert cmd[cmd.index("--appendonly") + 1] == "yes", "turn state and the outbox need AOF"
    data = [v for v in redis["volumes"] if v["target"] == "/data"]
    assert data and data[0]["type"] == "volume" and data[0]["source"] == "redis-data"
    gateway = {v["target"]: v for v in base_config["services"]["gateway"]["volumes"]}
    assert gateway["/app/data"]["source"] == "data" and not gateway["/app/data"].get("read_only")
    assert "ports" not in redis, "Redis must not be published"


def test_images_run_the_makefile_commands(base_config: dict[str, Any]) -> None:
    targets = makefile_commands()
    for svc, (dockerfile, target) in PY_SERVICES.items():
        spec = base_config["services"][svc]
        assert spec["build"]["dockerfile"] == dockerfile, svc
        assert spec.get("command") is None and spec.get("entrypoint") is None, f"{svc} overrides the image command"
        stage = final_stage(ROOT / dockerfile)
        cmds = [json.loads(args) for word, args in stage if word == "CMD"]
        assert cmds, f"{dockerfile} has no JSON-form CMD"
        assert not [w for w, _ in stage if w == "ENTRYPOINT"], f"{dockerfile} sets an ENTRYPOINT"
        make = targets[target]
        assert cmds[-1] == make, f"{dockerfile} runs {cmds[-1]}, `make {target}` runs {make}"
        workdirs = [a for w, a in stage if w == "WORKDIR"]
        assert workdirs[-1] == "/app", f"{dockerfile}: the source tree must be the working directory"


def test_services_bind_all_interfaces_and_their_ports(base_config: dict[str, Any]) -> None:
    prefixes = {"stt": "STT", "tts": "TTS", "llm": "LLM", "gateway": "GATEWAY"}
    for svc, (dockerfile, _) in PY_SERVICES.items():
        env = " ".join(a for w, a in final_stage(ROOT / dockerfile) if w == "ENV")
        assert f"{prefixes[svc]}_HOST=0.0.0.0" in env, f"{dockerfile}: must listen on 0.0.0.0"
        assert f"{prefixes[svc]}_PORT={HTTP_PORTS[svc]}" in env, dockerfile
        assert "SWITCHBOARD_MODELS_DIR=/app/models" in env, dockerfile
        ports = base_config["services"][svc]["ports"]
        assert [p["target"] for p in ports] == [HTTP_PORTS[svc]], svc
    gateway_port = base_config["services"]["gateway"]["ports"][0]
    assert gateway_port["host_ip"] == "0.0.0.0"
    for svc in ("stt", "tts", "llm", "prometheus", "grafana"):
        assert base_config["services"][svc]["ports"][0]["host_ip"] == "127.0.0.1", f"{svc} is public"


@pytest.mark.parametrize("path", [BASE, GPU], ids=["base", "gpu"])
def test_environment_names_real_settings(path: Path) -> None:
    """Every STT_/TTS_/LLM_/GATEWAY_ variable the compose file sets is a field of that service's
    settings (a misspelt name would be silently ignored by pydantic-settings). Read from the file
    as written, so a developer's .env (the gateway's env_file) cannot change the result."""
    services = raw_yaml(path)["services"]
    settings = {"STT_": STTSettings, "TTS_": TTSSettings, "LLM_": LLMSettings, "GATEWAY_": GatewaySettings}
    allowed_extra = {"LLM_ENFORCE_EAGER"}  # read by the vLLM entrypoint script, not by Python
    checked = 0
    for svc in ("stt", "tts", "llm", "gateway"):
        for key in (services.get(svc) or {}).get("environment") or {}:
            for prefix, cls in settings.items():
                if key.startswith(prefix) and key not in allowed_extra:
                    field = key.removeprefix(prefix).lower()
                    if cls is GatewaySettings:  # nested GATEWAY_<GROUP>__<FIELD> or a flat alias
                        assert key in gateway_env_names(), f"{svc}: {key} is not a GatewaySettings variable"
                    else:
                        assert field in cls.model_fields, f"{svc}: {key} is not a {cls.__name__} field"
                    checked += 1
    assert checked >= (10 if path == BASE else 3)


def test_gateway_wiring(base_config: dict[str, Any]) -> None:
    env = base_config["services"]["gateway"]["environment"]
    assert env["GATEWAY_STT_URL"] == "http://stt:8001"
    assert env["GATEWAY_TTS_URL"] == "http://tts:8002"
    assert env["GATEWAY_LLM_URL"] == "http://llm:8000/v1"
    assert env["GATEWAY_REDIS_URL"].startswith("redis://redis:6379/")
    assert env["GATEWAY_LLM_MODEL"] == DEFAULT_MODEL_ID
    assert base_config["services"]["llm"]["environment"]["LLM_SERVED_MODEL_NAME"] == DEFAULT_MODEL_ID


def test_secrets_only_from_the_env_file() -> None:
    """No secret value is written in the compose files; they come from .env at run time."""
    secretish = re.compile(r"TOKEN|SECRET|PASSWORD|API_KEY|AUTH")
    for path in (BASE, GPU):
        for svc, spec in raw_yaml(path)["services"].items():
            env = spec.get("environment") or {}
            for key, value in env.items():
                if secretish.search(key):
                    assert re.fullmatch(r"\$\{[A-Z0-9_]+(:-)?\}", str(value)), f"{path.name} {svc}: {key}={value!r}"
    gateway = raw_yaml(BASE)["services"]["gateway"]
    assert gateway["env_file"] == [{"path": ".env", "required": False}]
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".env" in ignored and "models" in ignored, ".env and weights must never enter an image"


def test_every_variable_is_documented() -> None:
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    used: set[str] = set()

    def walk(node: Any) -> None:  # every string of the parsed file: comments are not config
        if isinstance(node, dict):
            for k, v in node.items():
                walk(k)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, str):
            text = node.replace("$$", "")  # $${...} is for the container's shell, not compose
            used.update(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))

    for path in (BASE, GPU):
        walk(raw_yaml(path))
    assert used, "no variables found"
    assert used <= documented, f"not in .env.example: {sorted(used - documented)}"


def test_gpu_override_shares_one_gpu(gpu_config: dict[str, Any]) -> None:
    services = gpu_config["services"]
    devices = []
    for svc in ("stt", "tts", "llm"):
        reservation = services[svc]["deploy"]["resources"]["reservations"]["devices"]
        assert len(reservation) == 1 and reservation[0]["driver"] == "nvidia", svc
        assert reservation[0]["capabilities"] == ["gpu"], svc
        devices.append(reservation[0]["device_ids"])
    assert devices[0] == devices[1] == devices[2] == ["0"]
    for svc in ("redis", "gateway", "models"):
        assert "deploy" not in services[svc], f"{svc} must not reserve the GPU"
    for svc in ("stt", "tts"):
        assert services[svc]["build"]["args"]["VARIANT"] == "cuda", svc
        assert services[svc]["image"].endswith("-cuda"), svc
    assert services["stt"]["environment"]["STT_DEVICE"] == "cuda"
    assert services["stt"]["environment"]["STT_COMPUTE_TYPE"] == "float16"
    assert services["tts"]["environment"]["TTS_DEVICE"] == "cuda"
    assert services["gateway"]["environment"]["GATEWAY_EXTRACTION_JSON_MODE"] == "json_schema"


def test_gpu_llm_is_vllm_with_the_budgeted_arguments(gpu_config: dict[str, Any]) -> None:
    llm = gpu_config["services"]["llm"]
    assert "build" not in llm, "the stand-in build would be tagged as the vLLM image"
    repo, _, tag = llm["image"].partition(":")
    assert repo == "vllm/vllm-openai" and re.fullmatch(r"v\d+\.\d+\.\d+", tag), llm["image"]
    args = llm["command"]
    assert args[0] == "Qwen/Qwen2.5-0.5B-Instruct"

    def value(flag: str) -> str:
        assert flag in args, f"missing {flag}"
        return str(args[args.index(flag) + 1])

    assert value("--served-model-name") == DEFAULT_MODEL_ID
    assert value("--port") == "8000" and value("--host") == "0.0.0.0"
    assert int(value("--max-model-len")) >= 2048
    assert value("--tool-call-parser") == "hermes"
    assert "--enable-prefix-caching" in args and "--enable-auto-tool-choice" in args
    budget = float(value("--gpu-memory-utilization"))
    default_row = raw_yaml(GPU)["x-vram-budget"]
    assert budget == default_row["cards"][default_row["default"]]["llm_gpu_memory_utilization"]
    assert budget <= 0.8, "vLLM must leave room for STT and TTS"
    assert {v["target"] for v in llm["volumes"]} == {"/root/.cache/huggingface"}
    assert set(llm["depends_on"]) == {"stt", "tts"}
    assert not any(k.startswith("LLM_MODEL_PATH") for k in llm["environment"]), "stand-in env leaked"
    assert llm["stop_signal"] == "SIGTERM" and llm["stop_grace_period"] in ("1m0s", "60s")


def test_gpu_budget_variable_reaches_vllm(tmp_path: Path) -> None:
    env_file = tmp_path / "card.env"
    env_file.write_text("LLM_GPU_MEMORY_UTILIZATION=0.75\nLLM_MAX_MODEL_LEN=8192\n")
    proc = run_compose(tmp_path, [BASE, GPU], "config", "--format", "json", env_file=env_file)
    assert proc.returncode == 0, proc.stderr
    args = json.loads(proc.stdout)["services"]["llm"]["command"]
    assert args[args.index("--gpu-memory-utilization") + 1] == "0.75"
    assert args[args.index("--max-model-len") + 1] == "8192"


@pytest.mark.parametrize(("toggle", "eager"), [("1", True), ("true", True), ("0", False), ("", False)])
def test_enforce_eager_toggle(toggle: str, eager: bool, gpu_config: dict[str, Any], tmp_path: Path) -> None:
    """Run the llm entrypoint script with a stand-in `vllm` that prints its argv."""
    llm = gpu_config["services"]["llm"]
    entrypoint = [part.replace("$$", "$") for part in llm["entrypoint"]]  # compose's escaping
    assert entrypoint[:2] == ["/bin/sh", "-c"]
    fake = tmp_path / "vllm"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "LLM_ENFORCE_EAGER": toggle}
    proc = subprocess.run([*entrypoint, *llm["command"]], capture_output=True, text=True, env=env, timeout=10)
    assert proc.returncode == 0, proc.stderr
    argv = proc.stdout.splitlines()
    assert argv[0] == "serve"
    assert argv[1 : len(llm["command"]) + 1] == llm["command"]
    assert ("--enforce-eager" in argv) is eager, shlex.join(argv)


def test_vram_budget_table_adds_up_and_matches_the_docs() -> None:
    budget = raw_yaml(GPU)["x-vram-budget"]
    cards = budget["cards"]
    assert set(cards) == {"16GB", "24GB", "80GB"} and budget["default"] in cards
    docs = vram_rows_from_docs()
    assert set(docs) == set(cards), f"docs/deploy.md rows {sorted(docs)}"
    for card, row in cards.items():
        llm_gib = row["card_gib"] * row["llm_gpu_memory_utilization"]
        total = row["stt_gib"] + row["tts_gib"] + llm_gib + row["headroom_gib"]
        assert total == pytest.approx(row["card_gib"], abs=0.05), f"{card}: parts add up to {total}"
        assert row["headroom_gib"] >= 1.5, f"{card}: no room for three CUDA contexts"
        assert row["llm_gpu_memory_utilization"] < 0.9, card
        doc = docs[card]
        for key in ("card_gib", "stt_gib", "tts_gib", "llm_gpu_memory_utilization", "headroom_gib"):
            assert doc[key] == pytest.approx(row[key]), f"{card} {key}: docs {doc[key]} vs compose {row[key]}"
        assert doc["llm_gib"] == pytest.approx(llm_gib, abs=0.05), card
    example = (ROOT / ".env.example").read_text()
    for row in cards.values():
        assert f"LLM_GPU_MEMORY_UTILIZATION={row['llm_gpu_memory_utilization']:.2f}" in example


def test_prometheus_scrapes_every_service(base_config: dict[str, Any]) -> None:
    import yaml

    prom = base_config["services"]["prometheus"]
    mount = next(v for v in prom["volumes"] if v["target"] == "/etc/prometheus/prometheus.yml")
    assert Path(mount["source"]) == ROOT / "deploy" / "prometheus" / "prometheus.yml" and mount["read_only"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    scrape = yaml.safe_load(Path(mount["source"]).read_text())["scrape_configs"]
    targets = {t for job in scrape for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{svc}:{port}" for svc, port in HTTP_PORTS.items()}
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in scrape)
