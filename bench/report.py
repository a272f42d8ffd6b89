"""Summaries, tables and the plot of ``make bench`` (:mod:`bench.capacity`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.load import CallOutcome
from bench.meters import percentiles

STAGES = ["endpointing_ms", "stt_ms", "llm_ttft_ms", "tts_first_audio_ms", "voice_to_voice_ms"]
MAX_ERROR_RATE = 0.01
"""A level with more failed turns than this (share of expected turns) misses the target."""
TARGETS_MS = [300, 500, 1000, 2000, 5000]
"""Response-latency targets at which capacity is also reported."""


def capacity_at(levels: list[dict[str, Any]], target_ms: float) -> int:
    """Most concurrent calls such that this level and every lower one kept p95 response latency
    ≤ ``target_ms`` with errors ≤ :data:`MAX_ERROR_RATE` (0 if even the first level missed)."""
    best = 0
    for lv in sorted(levels, key=lambda lv: lv["calls"]):
        p95 = lv["respond_ms"]["p95"]
        if p95 is None or p95 > target_ms or lv["error_rate"] > MAX_ERROR_RATE:
            break
        best = lv["calls"]
    return best


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def summarize(
    calls: int, outcomes: list[CallOutcome], gateway_cpu_s: float, wall_s: float, target_ms: float
) -> dict[str, Any]:
    """One load level's numbers from the callers' outcomes and the gateway's turn records.

    ``respond_ms`` per reply = gateway voice-to-voice − endpointing (turn detected → first frame).
    Errors = calls that failed (timeout, dropped) + spoken apologies (an upstream failed).
    """
    replies = [
        t
        for o in outcomes
        for t in o.turns
        if t.get("role") == "assistant" and str(t.get("reply_id", "")).startswith("reply")
    ]
    apologies = sum(
        1
        for o in outcomes
        for t in o.turns
        if t.get("role") == "assistant" and str(t.get("reply_id", "")).startswith("apology")
    )
    stages: dict[str, list[float]] = {s: [] for s in STAGES}
    respond: list[float] = []
    for turn in replies:
        lat = turn.get("latency_ms", {})
        for s in STAGES:
            if s in lat:
                stages[s].append(float(lat[s]))
        if "voice_to_voice_ms" in lat and "endpointing_ms" in lat:
            respond.append(float(lat["voice_to_voice_ms"]) - float(lat["endpointing_ms"]))
    failed = [o for o in outcomes if o.error]
    expected = max(1, sum(max(1, len(o.caller_v2v_ms)) for o in outcomes))
    errors = len(failed) + apologies
    call_minutes = sum(o.duration_s for o in outcomes) / 60
    r = percentiles(respond)
    level = {
        "calls": calls,
        "wall_s": wall_s,
        "replies": len(replies),
        "failed_calls": len(failed),
        "apologies": apologies,
        "error_rate": errors / expected,
        "errors_sample": [o.error for o in failed[:3]],
        "respond_ms": r,
        "stages_ms": {s.removesuffix("_ms"): percentiles(v) for s, v in stages.items()},
        "caller_v2v_ms": percentiles([v for o in outcomes for v in o.caller_v2v_ms]),
        "barge_in_ms": percentiles([o.barge_in_ms for o in outcomes if o.barge_in_ms is not None]),
        "barge_in_silence_ms": percentiles(
            [v for o in outcomes if (v := getattr(o, "barge_in_silence_ms", None)) is not None]
        ),
        "call_minutes": call_minutes,
        "gateway_cpu_s": gateway_cpu_s,
        "gateway_cpu_s_per_call_minute": gateway_cpu_s / call_minutes if call_minutes else None,
    }
    p95 = r["p95"]
    level["meets_target"] = bool(p95 is not None and p95 <= target_ms and errors / expected <= MAX_ERROR_RATE)
    return level


def _f(v: float | int | None, digits: int = 0) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def print_level(design: str, lv: dict[str, Any]) -> None:
    """One progress line per level."""
    _out(
        f"  {design:<5} N={lv['calls']:<4} replies={lv['replies']:<4} errors={lv['failed_calls']}+{lv['apologies']} "
        f"respond p50/p95={_f(lv['respond_ms']['p50'])}/{_f(lv['respond_ms']['p95'])} ms "
        f"v2v p95={_f(lv['stages_ms']['voice_to_voice']['p95'])} ms "
        f"{'meets' if lv['meets_target'] else 'MISSES'} target ({lv['wall_s']:.0f}s)"
    )


def print_summary(report: dict[str, Any]) -> None:
    """The tables: per design and level, then capacity, ratio, cost and gateway CPU."""
    _out(f"\nhost: {report['host']} ({report['cpu_count']} CPUs); LLM: {report['llm']}")
    _out(f"target: {report['target_metric']} ≤ {report['target_ms']:.0f} ms, errors ≤ {MAX_ERROR_RATE:.0%}")
    for d in report["designs"]:
        _out(
            f"\n### design `{d['design']}` ({d['stt_instances']} STT instance(s), {d['gateways']} gateway(s); "
            f"{', '.join(f'{k}={v}' for k, v in d['env'].items())})\n"
        )
        _out(
            "| calls | replies | errors | respond p50 | respond p95 | v2v p50 | v2v p95 | STT p95 | "
            "LLM TTFT p95 | TTS first p95 | caller v2v p95 | barge-in p50 | barge-in silence p50 | gw CPU s/call-min | "
            "target |"
        )
        _out("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for lv in d["levels"]:
            st = lv["stages_ms"]
            _out(
                f"| {lv['calls']} | {lv['replies']} | {lv['failed_calls'] + lv['apologies']} | "
                f"{_f(lv['respond_ms']['p50'])} | {_f(lv['respond_ms']['p95'])} | "
                f"{_f(st['voice_to_voice']['p50'])} | {_f(st['voice_to_voice']['p95'])} | {_f(st['stt']['p95'])} | "
                f"{_f(st['llm_ttft']['p95'])} | {_f(st['tts_first_audio']['p95'])} | "
                f"{_f(lv['caller_v2v_ms']['p95'])} | {_f(lv['barge_in_ms']['p50'])} | "
                f"{_f(lv.get('barge_in_silence_ms', {}).get('p50'))} | "
                f"{_f(lv['gateway_cpu_s_per_call_minute'], 2)} | {'✓' if lv['meets_target'] else '✗'} |"
            )
    _print_resources(report)
    _out("\n| design | " + " | ".join(f"calls at p95 ≤ {t} ms" for t in TARGETS_MS) + " |")
    _out("|---|" + "---|" * len(TARGETS_MS))
    for d in report["designs"]:
        _out(f"| {d['design']} | " + " | ".join(str(d["capacity_at_ms"][str(t)]) for t in TARGETS_MS) + " |")
    caps = {d["design"]: d["capacity_calls"] for d in report["designs"]}
    _out(f"\n| design | calls at target ({report['target_ms']:.0f} ms) | ratio vs seed | $ per concurrent call-hour |")
    _out("|---|---|---|---|")
    for name, cap in caps.items():
        ratio = f"{cap / caps['seed']:.1f}×" if caps.get("seed") else "–"
        usd = report.get("usd_per_hour")
        cost = f"${usd / cap:.3f} (at ${usd:.2f}/h)" if usd and cap else "–"
        _out(f"| {name} | {cap} | {ratio} | {cost} |")
    ours = next((d for d in report["designs"] if d["design"] == "ours"), report["designs"][0])
    top = ours["levels"][-1]
    _out(
        f"\ngateway CPU at the highest N ({top['calls']} calls, design {ours['design']}): "
        f"{_f(top['gateway_cpu_s_per_call_minute'], 2)} CPU-s per call-minute "
        f"({_f(top['gateway_cpu_s'], 0)} s over {top['call_minutes']:.1f} call-minutes)"
    )


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f} %"


def _print_resources(report: dict[str, Any]) -> None:
    """CPU per process group and GPU utilisation per level (levels measured with bench.meters)."""
    rows = [(d["design"], lv) for d in report["designs"] for lv in d["levels"] if "cpu" in lv]
    if not rows:
        return
    _out(
        f"\nCPU and GPU per level (stack cores: {report.get('stack_cpus') or 'all'}, "
        f"load generator cores: {report.get('load_cpus') or 'shared'}; CPU-s per call-minute):\n"
    )
    _out(
        "| design | calls | stack cores busy | load cores busy | gateway | STT | TTS | LLM | Redis | load gen | "
        "GPU SM p50 / max | GPU mem-bw p50 | GPU memory used |"
    )
    _out("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for design, lv in rows:
        c, g = lv["cpu"], lv.get("gpu") or {}
        per = c["s_per_call_minute"]
        sm, bw = g.get("sm_pct") or {}, g.get("mem_bw_pct") or {}
        fb = g.get("fb_used_mib_max")
        _out(
            f"| {design} | {lv['calls']} | {_pct(c['stack_cores_busy'])} of {c['stack_cores']} | "
            f"{_pct(c['load_cores_busy'])} | {_f(per['gateway'], 2)} | {_f(per['stt'], 2)} | {_f(per['tts'], 2)} | "
            f"{_f(per['llm'], 2)} | {_f(per['redis'], 2)} | {_f(per['load_generator'], 2)} | "
            f"{_f(sm.get('p50'))} / {_f(sm.get('max'))} % | {_f(bw.get('p50'))} % | "
            f"{'–' if fb is None else f'{fb / 1024:.1f} GiB'} |"
        )


def plot(report: dict[str, Any], path: Path) -> None:
    """Latency percentiles vs concurrent calls, one colour per design, target as a line (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=120)
    colours = {"ours": "tab:blue", "seed": "tab:red"}
    others = iter(["tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:olive", "tab:cyan"])
    for d in report["designs"]:
        xs = [lv["calls"] for lv in d["levels"]]
        c = colours.get(d["design"]) or next(others, None)  # merged runs get colours of their own
        for key, style, label in (("p95", "-", "respond p95"), ("p50", ":", "respond p50")):
            ys = [lv["respond_ms"][key] if lv["respond_ms"][key] is not None else np.nan for lv in d["levels"]]
            ax.plot(xs, ys, style, marker="o", color=c, label=f"{d['design']}: {label}")
        ys = [lv["stages_ms"]["voice_to_voice"]["p95"] or np.nan for lv in d["levels"]]
        ax.plot(xs, ys, "--", marker="x", color=c, alpha=0.5, label=f"{d['design']}: voice-to-voice p95")
    ax.axhline(report["target_ms"], color="k", lw=1, label=f"target {report['target_ms']:.0f} ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("concurrent calls")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"Switchboard capacity — {report['host']}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
