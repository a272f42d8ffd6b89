"""The provisioned Grafana dashboard: well-formed, wired to the provisioned datasource, and every
PromQL query names a metric that exists: registered by our services' code, or vLLM's own."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from typing import Any

import pytest
import yaml
from deploy_helpers import ROOT
from prometheus_client import REGISTRY

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "switchboard.json"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"

# Packages whose modules define our metrics (gateway/metrics.py, services/stt/metrics.py and the
# STT scheduler, services/tts/routes.py, ...). Every module in them is imported, so a metric
# moved to a new module is still found.
METRIC_PACKAGES = ("services.stt", "services.tts", "gateway")

# vLLM's own metrics (its OpenAI server's /metrics, documented under "Production Metrics"):
# external, so they are listed here rather than found in our registry.
VLLM_METRICS = {
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:time_to_first_token_seconds",
}

PROMQL_WORDS = set(
    "sum avg min max count rate irate increase histogram_quantile by without on ignoring "
    "group_left group_right and or unless offset bool le clamp_min".split()
)


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def exprs() -> list[str]:
    return [t["expr"] for p in panels(dashboard()) for t in p.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords, label
    names (inside ``{}``, ``by (...)``) or durations."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # range selectors, incl. $__rate_interval
    e = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", e)  # grouping labels
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        name = m.group(0)
        following = e[m.end() :].lstrip()
        if following.startswith("(") or name in PROMQL_WORDS:
            continue
        names.add(name)
    return names


def exposed_names() -> set[str]:
    """Sample names our code registers, derived from each metric family's name and type (a labelled
    metric with no child yet has no samples, so the families are read, not the samples)."""
    for package in METRIC_PACKAGES:
        pkg = importlib.import_module(package)
        for info in pkgutil.iter_modules(pkg.__path__, prefix=f"{package}."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    names = set()
    for family in REGISTRY.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def test_metric_name_extraction() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, stage) "
        '(rate(gateway_stage_latency_seconds_bucket{stage="voice_to_voice"}[$__rate_interval])))'
    )
    assert metric_names(expr) == {"gateway_stage_latency_seconds_bucket"}
    assert metric_names("sum(vllm:num_requests_running) / sum(rate(stt_batch_size_count[5m])) * 60") == {
        "vllm:num_requests_running",
        "stt_batch_size_count",
    }


def test_dashboard_is_wired_to_the_provisioned_datasource() -> None:
    dash = dashboard()
    assert dash["uid"] and dash["title"] == "Switchboard"
    sources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert len(sources) == 1 and sources[0]["type"] == "prometheus"
    assert sources[0]["url"] == "http://prometheus:9090"
    uid = sources[0]["uid"]
    data_panels = [p for p in panels(dash) if p["type"] != "row"]
    assert len(data_panels) >= 10
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for p in data_panels:
        assert p["datasource"] == {"type": "prometheus", "uid": uid}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"]["uid"] == uid, p["title"]
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "switchboard.yml").read_text())["providers"]
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{providers[0]['options']['path']}:ro" in mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


def test_dashboard_shows_calls_stage_latency_and_gpu_queues() -> None:
    text = "\n".join(exprs())
    for needed in (
        "gateway_active_calls",
        "gateway_calls_total",
        "gateway_stage_latency_seconds_bucket",
        "stt_queue_depth",
        "stt_batch_size",
        "tts_inflight",
        "vllm:num_requests_running",
        "vllm:time_to_first_token_seconds_bucket",
    ):
        assert needed in text, f"no panel queries {needed}"
    for q in (0.5, 0.95, 0.99):
        assert f"histogram_quantile({q}, sum by (le, stage) (rate(gateway_stage_latency_seconds_bucket" in text


def test_dashboard_queries_name_existing_metrics() -> None:
    referenced: set[str] = set()
    for expr in exprs():
        referenced |= metric_names(expr)
    ours = {n for n in referenced if not n.startswith("vllm:")}
    external = referenced - ours
    assert external <= VLLM_METRICS | {f"{m}_{s}" for m in VLLM_METRICS for s in ("bucket", "sum", "count")}, (
        f"unknown vLLM metrics: {sorted(external - VLLM_METRICS)}"
    )
    missing = sorted(ours - exposed_names())
    if missing:
        pytest.fail("the dashboard queries metrics no service registers: " + ", ".join(missing))
