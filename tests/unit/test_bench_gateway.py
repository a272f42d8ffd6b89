"""``make bench-gateway``'s arithmetic (CPU from /proc text, pacing jitter, histogram quantiles,
variants, the table, the fakes' segmenter, the profile summary), the gateway's loop-lag monitor,
and one small real run: two calls against a real gateway process and the fakes."""

from __future__ import annotations

import asyncio
import json
import math
import time

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bench.gateway_bench import measure as m
from bench.gateway_bench.fakes import split_segments
from bench.gateway_bench.profile import parse_collapsed, short_frame, summarize_collapsed
from bench.gateway_bench.report import COLUMNS, markdown_table, table_row
from gateway.metrics import LOOP_LAG, LOOP_LAG_BUCKETS_S, watch_event_loop_lag

# A real /proc/<pid>/stat line of a Python process, its name holding a space and a parenthesis.
STAT = (
    "4242 (python -m (gw)) S 1 4242 4242 0 -1 4194560 12000 0 3 0 "
    "1234 567 0 0 20 0 9 0 98765 1234567890 45678 18446744073709551615 1 1 0 0 0 0 0 16781312 17642 0 0 0 17 1 0 0"
)


def test_cpu_seconds_are_utime_plus_stime_after_the_last_parenthesis():
    assert m.cpu_seconds_from_stat(STAT, 100) == pytest.approx(18.01)
    assert m.cpu_seconds_from_stat(STAT, 1000) == pytest.approx(1.801)
    with pytest.raises(ValueError):
        m.cpu_seconds_from_stat("garbage", 100)


def test_cpu_delta_skips_a_process_that_died():
    assert m.cpu_delta({1: 2.0, 2: 5.0, 3: None}, {1: 3.5, 2: None, 3: 9.0}) == pytest.approx(1.5)


def test_rss_from_status_and_cpu_of_this_process():
    assert m.rss_mib_from_status("Name:\tpython\nVmRSS:\t  204800 kB\n") == pytest.approx(200.0)
    with pytest.raises(ValueError):
        m.rss_mib_from_status("Name:\tkthreadd\n")
    assert (m.cpu_seconds(__import__("os").getpid()) or 0) > 0
    assert m.cpu_seconds(2**22 + 12345) is None


def test_a_perfectly_paced_burst_has_no_deviation_and_a_stall_delays_every_later_frame():
    lead = 0.1
    ideal = [0.0] * 6 + [(i * 0.02 - lead) for i in range(6, 50)]  # 5 lead frames at once, then 20 ms apart
    assert max(abs(d) for d in m.burst_deviations([10 + t for t in ideal], lead)) < 1e-9
    stalled = [t + (0.08 if i >= 20 else 0.0) for i, t in enumerate(ideal)]
    devs = m.burst_deviations(stalled, lead)
    assert devs[19] == pytest.approx(0.0) and devs[20] == pytest.approx(0.08) and devs[-1] == pytest.approx(0.08)
    assert m.burst_deviations([], lead) == []


def test_realtime_ratio_is_one_when_kept_up_and_below_when_audio_came_slower():
    lead = 0.1
    ok = [0.0] * 6 + [(i * 0.02 - lead) for i in range(6, 100)]
    slow = [t * 1.25 for t in ok]
    assert m.realtime_ratio([ok], lead) == pytest.approx(1.0)
    assert m.realtime_ratio([ok, slow], lead) == pytest.approx((2 * 1.88) / (1.88 + 1.88 * 1.25))
    assert m.realtime_ratio([[0.0, 0.0]], lead) is None  # too short to be paced


def test_quantiles_from_the_difference_of_two_scrapes_of_a_real_histogram():
    registry = CollectorRegistry()
    h = Histogram("gateway_event_loop_lag_seconds", "lag", buckets=LOOP_LAG_BUCKETS_S, registry=registry)
    for _ in range(500):
        h.observe(5.0)  # before the window: must not count
    before = m.parse_histogram(generate_latest(registry).decode(), "gateway_event_loop_lag_seconds")
    for _ in range(98):
        h.observe(0.0015)
    h.observe(0.04)
    h.observe(0.04)
    after = m.parse_histogram(generate_latest(registry).decode(), "gateway_event_loop_lag_seconds")
    delta = m.bucket_delta(before, after)
    assert delta[math.inf] == 100
    assert 0.001 < m.histogram_quantile(0.5, delta) <= 0.002  # type: ignore[operator]
    assert 0.03 < m.histogram_quantile(0.99, delta) <= 0.05  # type: ignore[operator]
    assert m.histogram_quantile(0.5, {}) is None
    assert m.histogram_quantile(0.5, {1.0: 0.0, math.inf: 0.0}) is None
    assert m.histogram_quantile(0.99, {1.0: 1.0, math.inf: 10.0}) == 1.0  # in +Inf: the highest bound
    assert m.parse_histogram('other_bucket{le="1"} 3\n', "gateway_event_loop_lag_seconds") == {}


def test_variants_and_levels_parse_and_refuse_nonsense():
    assert m.parse_variant("current") == m.Variant("current", {})
    v = m.parse_variant("after: GATEWAY_VAD_BATCH=1 , GATEWAY_SMART_TURN_URL=http://x:1/v1/turn")
    assert v.name == "after" and v.env == {"GATEWAY_VAD_BATCH": "1", "GATEWAY_SMART_TURN_URL": "http://x:1/v1/turn"}
    for bad in (":A=1", "x:A", "x:=1"):
        with pytest.raises(ValueError):
            m.parse_variant(bad)
    assert m.parse_levels("100,25, 50") == [25, 50, 100]
    for bad in ("", "0,5"):
        with pytest.raises(ValueError):
            m.parse_levels(bad)
    assert m.overlap_s(0, 10, (5, 20)) == 5 and m.overlap_s(0, 4, (5, 20)) == 0


def level_summary(**kw: object) -> dict:
    lv = {
        "calls": 50,
        "gateway": {"cpu_s_per_call_min": 1.0234, "cores": 0.85, "rss_mib_max": 521.7},
        "fakes": {"cpu_s_per_call_min": 0.05},
        "loadgen": {"cpu_s_per_call_min": 0.31},
        "loop_lag_ms": {"p50": 1.24, "p99": 69.0},
        "jitter_ms": {"p99": 25.3},
        "endpointing_ms": {"p50": 310.0, "p95": 420.0},
        "realtime": 0.991,
        "kept_up": True,
        "calls_ok": 50,
        "calls_failed": 0,
    }
    lv.update(kw)
    return lv


def test_table_rows_and_markdown():
    row = table_row("current", level_summary())
    assert row["gw_cpu"] == "1.02" and row["lag"] == "1.2 / 69" and row["realtime"] == "99 %"
    assert row["endpointing"] == "310 / 420" and row["others"] == "0.05 / 0.31"
    missing = table_row("x", level_summary(realtime=0.8, kept_up=False, jitter_ms={"p99": None}))
    assert missing["realtime"] == "80 % ✗" and missing["jitter"] == "–"
    lines = markdown_table([row, missing]).splitlines()
    assert len(lines) == 4 and lines[1] == "|" + "---|" * len(COLUMNS)
    assert lines[2].startswith("| current | 50 | 1.02 |")


def test_the_fake_tts_cuts_sentences_and_a_long_first_clause():
    segs, rest = split_segments("Sure, we can send a plumber out today, no problem. What is your add", first=True)
    assert segs == ["Sure, we can send a plumber out today,", "no problem."] and rest == "What is your add"
    segs, rest = split_segments("Okay, thanks. Bye", first=False)
    assert segs == ["Okay, thanks."] and rest == "Bye"


def test_profile_summary_counts_stages_inclusive_and_self():
    raw = [
        "<module> (gateway/__main__.py:22);run (asyncio/runners.py:1);"
        "_receive_loop (gateway/conversation/session.py:9);process (gateway/conversation/vad.py:40) 30",
        "worker (concurrent/futures/thread.py:1);probability (gateway/conversation/smart_turn.py:55);"
        "run (onnxruntime/capi/onnxruntime_inference_collection.py:220) 60",
        "worker (concurrent/futures/thread.py:1);probability (gateway/conversation/smart_turn.py:54);"
        "__call__ (faster_whisper/feature_extractor.py:100) 10",
        "not a line",
    ]
    stacks = parse_collapsed(raw)
    assert len(stacks) == 3 and short_frame("process (gateway/conversation/vad.py:40)") == "process (vad.py)"
    text = summarize_collapsed(stacks)
    assert "py-spy samples: 100" in text
    assert any(line.startswith("Smart Turn (all)") and "70.0 %" in line for line in text.splitlines())
    assert any(line.startswith("  Smart Turn ONNX run") and "60.0 %" in line for line in text.splitlines())
    assert any(line.startswith("Silero VAD") and "30.0 %" in line for line in text.splitlines())
    assert " 70.0 %  probability (smart_turn.py)" in text


async def test_the_loop_lag_monitor_sees_a_blocked_loop():
    def above(bound: float) -> float:
        samples = LOOP_LAG.collect()[0].samples
        total = sum(s.value for s in samples if s.name.endswith("_count"))
        return total - sum(s.value for s in samples if s.name.endswith("_bucket") and s.labels["le"] == str(bound))

    late_before = above(0.05)
    monitor = asyncio.create_task(watch_event_loop_lag(0.01))
    await asyncio.sleep(0.03)
    time.sleep(0.12)  # noqa: ASYNC251 — the point: a synchronous call blocking the loop
    await asyncio.sleep(0.03)
    monitor.cancel()
    assert above(0.05) > late_before


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_two_real_calls_against_one_gateway_and_the_fakes(tmp_path):
    """Smoke: the real gateway (real Silero and Smart Turn) answers two simulated callers through the fakes."""
    from bench.gateway_bench.run import Bench, parse_args

    args = parse_args(
        ["--levels", "2", "--duration", "6", "--ramp-s", "0.4", "--warmup-s", "7", "--log-dir", str(tmp_path / "logs")]
    )
    report = Bench(args).run([m.Variant("current")], [2])
    lv = report["variants"][0]["levels"][0]
    assert lv["calls_ok"] == 2, lv["errors"]
    assert lv["gateway"]["cpu_s"] > 0 and lv["gateway"]["rss_mib_max"] > 50
    assert lv["loop_lag_ms"]["n"] > 0 and lv["loop_lag_ms"]["p50"] is not None
    assert lv["replies"] >= 2 and lv["lines_spoken"] >= 2  # both greetings played to the end, both callers spoke
    assert report["meta"]["fakes"]["audio_source"] in ("espeak-ng", "synthetic")
    json.dumps(report)  # the report is JSON
