"""The capacity benchmark's meters (bench/meters.py) and its gateway count (bench/capacity.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.capacity import auto_gateways, design_env
from bench.meters import CoreUsage, GpuMonitor, GroupCpu, parse_cpus

DMON = """\
# gpu     sm    mem    enc    dec    jpg    ofa     fb   bar1   ccpm
# Idx      %      %      %      %      %      %     MB     MB     MB
    0     12      3      0      0      0      0  40960      2      0
    0     40      9      0      0      0      0  41984      2      0
    0      -      -      0      0      0      0  41000      2      0
"""


def test_parse_cpus_ranges_and_errors() -> None:
    assert parse_cpus(None) is None and parse_cpus("") is None
    assert parse_cpus("0") == {0}
    if (os.cpu_count() or 1) >= 2:
        assert parse_cpus("0-1") == {0, 1}
        assert parse_cpus("1,0") == {0, 1}
    with pytest.raises(ValueError, match="names CPU"):
        parse_cpus(f"0-{(os.cpu_count() or 1) + 3}")
    with pytest.raises(ValueError):
        parse_cpus("3-1")


def test_core_usage_sees_a_busy_core() -> None:
    cores = CoreUsage()
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        pass  # keep one core busy
    busy = cores.busy(None)
    assert busy is not None and 0.2 / (os.cpu_count() or 1) < busy <= 1.0


def test_group_cpu_counts_a_matching_process() -> None:
    code = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\ntime.sleep(5)"
    groups = {"probe": re.compile("marker-switchboard-meter"), "none": re.compile("no-such-process-xyz")}
    meter = GroupCpu(groups)
    proc = subprocess.Popen([sys.executable, "-c", code, "marker-switchboard-meter"])
    try:
        deadline = time.monotonic() + 5
        seen = 0.0
        while time.monotonic() < deadline and seen < 0.35:
            time.sleep(0.1)
            seen = meter.since()["probe"]
        assert 0.35 <= seen < 2.0
        assert meter.since()["none"] == 0.0
    finally:
        proc.kill()
        proc.wait()


def test_gpu_monitor_parses_dmon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\n"
        "if [ \"$1\" = dmon ]; then cat <<'EOF'\n" + DMON + "EOF\nsleep 30\nelse\n"
        f'echo "{os.getpid()}, 1234"\nfi\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with GpuMonitor() as gpu:
        time.sleep(0.5)
    summary = gpu.summary()
    assert summary is not None
    assert summary["samples"] == 3
    assert summary["sm_pct"] == {"p50": 26.0, "max": 40.0}  # the "-" row has no SM figure
    assert summary["fb_used_mib_max"] == 41984.0
    assert summary["process_mib"] == {"other": 1234.0}  # this test's process matches no stack group


def test_gpu_monitor_without_nvidia_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with GpuMonitor() as gpu:
        pass
    assert gpu.summary() is None


def test_auto_gateways_follows_load_and_cores() -> None:
    assert auto_gateways(12, 300) == 6  # capped at one per two cores
    assert auto_gateways(12, 100) == 3  # one per 40 calls
    assert auto_gateways(1, 5) == 1
    assert design_env("ours", gpu=True)["GATEWAY_LISTENING__SMART_TURN_BACKEND"] == "stt"
    assert "GATEWAY_LISTENING__SMART_TURN_BACKEND" not in design_env("seed", gpu=True)


def test_group_cpu_counts_per_process_so_one_that_exits_cannot_make_a_group_negative() -> None:
    busy = "import time\nend = time.process_time() + {s}\nwhile time.process_time() < end: pass\ntime.sleep(30)"
    groups = {"probe": re.compile("marker-switchboard-group")}
    old = subprocess.Popen([sys.executable, "-c", busy.format(s=0.5), "marker-switchboard-group"])
    new = None
    try:
        time.sleep(1.0)  # the old process has used its 0.5 s
        meter = GroupCpu(groups)
        old.kill()
        old.wait()
        new = subprocess.Popen([sys.executable, "-c", busy.format(s=0.3), "marker-switchboard-group"])
        deadline, used = time.monotonic() + 5, 0.0
        while time.monotonic() < deadline and used < 0.25:
            time.sleep(0.1)
            used = meter.since()["probe"]
        assert 0.25 <= used < 1.5  # the new process's work only: not minus the exited one's 0.5 s
    finally:
        for proc in (old, new):
            if proc is not None:
                proc.kill()
                proc.wait()
