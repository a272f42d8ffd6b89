"""The table and the plot of ``make bench-gateway`` (from the JSON :mod:`bench.gateway_bench.run` writes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLUMNS: tuple[tuple[str, str], ...] = (
    ("variant", "variant"),
    ("calls", "calls"),
    ("gw_cpu", "gateway CPU-s / call-min"),
    ("gw_cores", "gateway cores"),
    ("lag", "loop lag p50 / p99 ms"),
    ("jitter", "jitter p99 ms"),
    ("realtime", "realtime"),
    ("rss", "RSS MB"),
    ("endpointing", "endpointing p50 / p95 ms"),
    ("calls_ok", "calls ok / failed"),
    ("others", "fakes / loadgen CPU-s / call-min"),
)
"""Table columns: key → header."""


def _num(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table_row(variant: str, lv: dict[str, Any]) -> dict[str, str]:
    """One level's cells (strings) from its JSON summary."""
    lag, jit, ep = lv["loop_lag_ms"], lv["jitter_ms"], lv["endpointing_ms"]
    realtime = lv.get("realtime")
    return {
        "variant": variant,
        "calls": str(lv["calls"]),
        "gw_cpu": _num(lv["gateway"]["cpu_s_per_call_min"], 2),
        "gw_cores": _num(lv["gateway"]["cores"], 2),
        "lag": f"{_num(lag['p50'], 1)} / {_num(lag['p99'], 0)}",
        "jitter": _num(jit["p99"], 0),
        "realtime": "–" if realtime is None else f"{100 * realtime:.0f} %" + ("" if lv["kept_up"] else " ✗"),
        "rss": _num(lv["gateway"]["rss_mib_max"], 0),
        "endpointing": f"{_num(ep['p50'])} / {_num(ep['p95'])}",
        "calls_ok": f"{lv['calls_ok']} / {lv['calls_failed']}",
        "others": f"{_num(lv['fakes']['cpu_s_per_call_min'], 2)} / {_num(lv['loadgen']['cpu_s_per_call_min'], 2)}",
    }


def markdown_table(rows: list[dict[str, str]]) -> str:
    """Rows of :func:`table_row` cells → a GitHub markdown table (header, rule, one line per row)."""
    keys = [k for k, _ in COLUMNS]
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(row.get(k, "") for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def report_table(report: dict[str, Any]) -> str:
    """The whole run's table: every variant × level."""
    return markdown_table([table_row(v["name"], lv) for v in report["variants"] for lv in v["levels"]])


def plot(report: dict[str, Any], path: Path) -> None:
    """Four panels against concurrent calls, one line per variant: gateway CPU-s per call-minute,
    event-loop lag p99, outbound jitter p99, RSS; the issue's targets as dashed lines (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("gateway CPU-s per call-minute", lambda lv: lv["gateway"]["cpu_s_per_call_min"], 0.6),
        ("event-loop lag p99 (ms)", lambda lv: lv["loop_lag_ms"]["p99"], 10.0),
        ("outbound frame jitter p99 (ms)", lambda lv: lv["jitter_ms"]["p99"], 20.0),
        ("gateway RSS max (MB)", lambda lv: lv["gateway"]["rss_mib_max"], None),
    )
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), dpi=110)
    for ax, (title, get, target) in zip(axes.flat, panels, strict=True):
        for v in report["variants"]:
            xs = [lv["calls"] for lv in v["levels"]]
            ys = [get(lv) if get(lv) is not None else float("nan") for lv in v["levels"]]
            ax.plot(xs, ys, marker="o", label=v["name"])
        if target is not None:
            ax.axhline(target, color="k", lw=1, ls="--", label=f"target {target:g}")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("concurrent calls (one gateway process)", fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"make bench-gateway — {report['meta']['host']}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
