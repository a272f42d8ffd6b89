"""scripts/cost_model.py: Erlang B sizing against the published table, capacity read from the GPU run,
pods and dollars that follow the profile."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("cost_model", ROOT / "scripts" / "cost_model.py")
assert spec is not None and spec.loader is not None
cost_model = importlib.util.module_from_spec(spec)
sys.modules["cost_model"] = cost_model
spec.loader.exec_module(cost_model)


def test_erlang_b_matches_the_table() -> None:
    # Erlang B tables at 1 % blocking: 18 trunks carry 10.44 erlangs, 17 carry 9.65; 5 erlangs need 11.
    assert cost_model.slots_for(10.0, 0.01) == 18
    assert cost_model.slots_for(5.0, 0.01) == 11
    assert cost_model.erlang_b(10.0, 18) == pytest.approx(0.0071, abs=5e-4)
    assert cost_model.slots_for(0.0, 0.01) == 0


def test_capacity_comes_from_the_gpu_run() -> None:
    calls, usd, host = cost_model.measured_capacity(ROOT / "docs" / "bench-capacity-h100.json", 500)
    run = json.loads((ROOT / "docs" / "bench-capacity-h100.json").read_text())
    ours = next(d for d in run["designs"] if d["design"] == "ours")["levels"]
    assert calls == max(lv["calls"] for lv in ours if lv["respond_ms"]["p95"] <= 500)
    assert usd == run["usd_per_hour"] and "H100" in host
    assert cost_model.measured_capacity(ROOT / "docs" / "bench-capacity-h100.json", 300)[0] < calls
    with pytest.raises(ValueError, match="no level"):
        cost_model.measured_capacity(ROOT / "docs" / "bench-capacity-h100.json", 10)


def test_pods_and_dollars_follow_the_profile() -> None:
    small = cost_model.estimate(cost_model.Profile(10, 20, 3, 0.2), 25, 2.0)
    big = cost_model.estimate(cost_model.Profile(1000, 20, 3, 0.2), 25, 2.0)
    assert small.peak_pods == 1 and small.gpu_hours_per_day == 24  # the one pod always up
    assert big.peak_pods > big.offpeak_pods >= big.night_pods == 1
    assert big.peak_slots / 25 <= big.peak_pods < big.peak_slots / 25 + 1
    assert big.usd_per_month > small.usd_per_month and big.usd_per_client_month < small.usd_per_client_month
    assert small.usd_per_month == pytest.approx(24 * 2.0 * 30 + 1 * 60 * 0.20)
    with pytest.raises(ValueError):
        cost_model.estimate(cost_model.Profile(10, 20, 3, 0.0), 25, 2.0)
