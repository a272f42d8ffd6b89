"""``make bench``: how many concurrent phone calls one host serves at the latency target.

For each design and each load level N, starts the stack as processes, places N concurrent
simulated Twilio calls (:mod:`bench.load`: real-time μ-law, a multi-turn script in a synthetic
Kokoro voice, pauses, one barge-in per call) and reads every turn's latencies from the gateway's
own records. Levels rise until the p95 latency breaks the target (or errors pass 1 %).

Designs, compared in the same run on the same host:

* ``ours`` — one STT service batching across calls (``STT_MAX_BATCH`` auto), TTS with its
  scheduler (``TTS_MAX_BATCH`` 16 on a GPU, 1 on CPU), all gateways sharing them.
* ``seed`` — the seeds' design: one faster-whisper instance per call slot, each decoding one
  request at a time (``--seed-stt-instances`` STT processes with ``STT_MAX_BATCH=1``, each
  gateway process bound to one), and one TTS request at a time (``TTS_MAX_BATCH=1``,
  ``TTS_MAX_INFLIGHT=1``, no phrase cache).

The target applies to the **response latency**: from the moment the gateway decides the caller's
turn is over to the first agent audio frame it sends (STT + LLM first token + TTS first audio +
glue). Voice-to-voice as the server sees it adds the endpointing wait (a fixed policy: ~200 ms
pause for Smart Turn, more when the model is unsure) and is reported beside it.

Usage: ``python -m bench.capacity --levels 1,2,4 --json docs/bench-capacity-cpu.json`` (CPU, real
LLM) or see ``docs/benchmarks.md`` for the GPU commands (``--llm vllm``: a vLLM server started by
``bench/gpu/vllm.sh``; ``--llm standin``: the calibrated stand-in of earlier runs). Per level the JSON
also holds CPU-s per call-minute of each process group and of the load generator, the busy share of
the stack's and the load generator's cores (``--stack-cpus``/``--load-cpus`` pin them apart), and
``nvidia-smi dmon`` GPU utilisation and memory;
``python -m bench.capacity --plot-only docs/bench-capacity-*.json`` redraws the PNGs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.llm_warmup import warm_up
from bench.load import CallOutcome, Line, run_load, synthesize_lines
from bench.meters import CoreUsage, GpuMonitor, GroupCpu, parse_cpus, pin, process_stat
from bench.report import TARGETS_MS, capacity_at, plot, print_level, print_summary, summarize
from bench.script import BARGE_IN_LINE, SCRIPT
from tools.stack import Ports, Service, Stack, free_port

log = logging.getLogger("bench")


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def design_env(design: str, gpu: bool) -> dict[str, str]:
    """Service settings that make up each design (on top of the host's environment).

    On a GPU host ``ours`` also moves Smart Turn off the gateways into the STT service's batched
    ``POST /v1/turn`` (docs/turn-taking.md); the seed design keeps one check per call in its gateway.
    """
    if design == "seed":  # the seeds' TTS synthesised every segment: no phrase cache
        return {"STT_MAX_BATCH": "1", "TTS_MAX_BATCH": "1", "TTS_MAX_INFLIGHT": "1", "TTS_PHRASE_CACHE_MB": "0"}
    env = {"STT_MAX_BATCH": "0", "TTS_MAX_BATCH": "16" if gpu else "1"}
    if gpu:
        env["GATEWAY_LISTENING__SMART_TURN_BACKEND"] = "stt"
    return env


def auto_gateways(stack_cpus: int, max_calls: int) -> int:
    """Gateway processes for a host: one per ~40 calls of the highest level (a gateway costs
    ~0.5 CPU-s per call-minute, docs/benchmarks.md, so 40 calls keep one under a third of a core
    and its event loop responsive), at most one per two cores the stack has, at least one."""
    return max(1, min(stack_cpus // 2, -(-max_calls // 40)))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children (Linux ``/proc``)."""
    ticks = sum(int(x) for x in process_stat(pid)[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


class DesignStack:
    """Redis, LLM, TTS, the design's STT instance(s) and ``gateways`` gateway processes."""

    def __init__(self, design: str, args: argparse.Namespace, log_dir: Path) -> None:
        self.design = design
        env = {
            **design_env(design, args.gpu),
            "GATEWAY_DATABASE_ENABLED": "false",
            "GATEWAY_LOG_LEVEL": "WARNING",
            "STT_LOG_LEVEL": "WARNING",
            "TTS_LOG_LEVEL": "WARNING",
        }
        ports = Ports.free()
        only = {"redis", "llm", "stt", "tts"}
        if args.llm == "vllm":
            ports.llm = urlsplit(args.llm_url).port or 80  # an OpenAI server started outside (bench/gpu/vllm.sh)
            only.discard("llm")
        self.core = Stack(ports, reuse=False, log_dir=log_dir, env=env, webhook_sink=False, only=only)
        if args.llm == "standin":
            self.core.service("llm").argv = [
                sys.executable,
                "-m",
                "bench.llm_standin",
                "--calibration",
                str(args.calibration),
                "--port",
                str(ports.llm),
            ]
        stt = self.core.service("stt")
        stt_urls = [f"http://127.0.0.1:{ports.stt}"]
        extra: list[Service] = []
        for i in range(1, args.seed_stt_instances if design == "seed" else 1):
            port = free_port()
            extra.append(Service(f"stt{i}", stt.argv, port, {"STT_PORT": str(port)}))
            stt_urls.append(f"http://127.0.0.1:{port}")
        self.core.services += extra
        self.gateways = [
            self.core.gateway_service(f"gateway{i}", free_port(), stt_urls[i % len(stt_urls)])
            for i in range(args.gateways)
        ]
        self.front = Stack(ports, reuse=False, log_dir=log_dir, env=env, webhook_sink=False, only=set())
        self.front.services = self.gateways
        self.stt_instances = len(stt_urls)

    @property
    def gateway_urls(self) -> list[str]:
        """One URL per gateway process."""
        return [f"http://127.0.0.1:{g.port}" for g in self.gateways]

    @property
    def tts_url(self) -> str:
        """The TTS service (also voices the simulated callers)."""
        return f"http://127.0.0.1:{self.core.ports.tts}"

    def gateway_cpu(self) -> float:
        """CPU seconds used so far by all gateway processes."""
        return sum(_cpu_seconds(g.proc.pid) for g in self.gateways if g.proc is not None)

    def __enter__(self) -> DesignStack:
        self.core.start(timeout_s=600)
        try:
            self.front.start(timeout_s=300)
        except BaseException:
            self.core.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.front.stop()
        self.core.stop()


def run_design(
    design: str, args: argparse.Namespace, lines: list[Line] | None, checkpoint: Callable[[list[dict[str, Any]]], None]
) -> dict[str, Any]:
    """All load levels of one design; stops one level after the target breaks.

    ``checkpoint(levels)`` is called after each level with the levels so far (a partial report is
    written, so a run cut short on a lent machine still leaves its measured levels)."""
    log_dir = Path(args.log_dir) / design
    levels: list[dict[str, Any]] = []
    with DesignStack(design, args, log_dir) as stack:
        if lines is None:
            lines = synthesize_lines(stack.tts_url, [*SCRIPT[: args.turns], BARGE_IN_LINE])
        script, barge = lines[:-1], lines[-1]
        _out(f"\n== design {design}: {stack.stt_instances} STT instance(s), {len(stack.gateways)} gateway(s) ==")
        # One unmeasured call per gateway first: connections, CUDA kernels and caches warm up.
        run_load(
            stack.gateway_urls,
            len(stack.gateways),
            script[:1],
            None,
            ramp_s=1.0,
            processes=1,
            timeout_s=args.reply_timeout_s,
        )
        for n in args.levels:
            cpu0, t0 = stack.gateway_cpu(), time.monotonic()
            groups, load0, cores = GroupCpu(), _load_cpu_seconds(), CoreUsage()
            with GpuMonitor() as gpu:
                outcomes: list[CallOutcome] = run_load(
                    stack.gateway_urls,
                    n,
                    script,
                    barge if args.barge_in else None,
                    ramp_s=args.ramp_s,
                    processes=min(args.load_procs, n),
                    timeout_s=args.reply_timeout_s,
                    seed=n,
                    cpus=args.load_cpu_set,
                )
            wall = time.monotonic() - t0
            level = summarize(n, outcomes, stack.gateway_cpu() - cpu0, wall, args.target_ms)
            group_s = groups.since()
            minutes = level["call_minutes"] or float("nan")
            level["cpu"] = {
                "stack_cores_busy": cores.busy(args.stack_cpu_set),
                "load_cores_busy": cores.busy(args.load_cpu_set) if args.load_cpu_set else None,
                "stack_cores": len(args.stack_cpu_set) if args.stack_cpu_set else os.cpu_count(),
                "load_cores": len(args.load_cpu_set) if args.load_cpu_set else None,
                "s_per_call_minute": {
                    **{g: s / minutes for g, s in group_s.items()},
                    "load_generator": (_load_cpu_seconds() - load0) / minutes,
                },
            }
            level["gpu"] = gpu.summary()
            levels.append(level)
            print_level(design, level)
            checkpoint(levels)
            p95 = level["respond_ms"]["p95"]
            if p95 is None or p95 > max(args.stop_ms or 0, args.target_ms) or level["error_rate"] > 0.2:
                break  # the level that breaks the target (or --stop-ms) is the last one measured
    capacity = capacity_at(levels, args.target_ms)
    return {
        "design": design,
        "stt_instances": stack.stt_instances,
        "gateways": args.gateways,
        "env": design_env(design, args.gpu),
        "levels": levels,
        "capacity_calls": capacity,
        "capacity_at_ms": {str(t): capacity_at(levels, t) for t in TARGETS_MS},
        "_lines": lines,
    }


def _load_cpu_seconds() -> float:
    """CPU seconds of this process and its reaped children: the load generator's worker
    processes are reaped at the end of each level (the stack's services only when it stops)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _llm_source(args: argparse.Namespace) -> str:
    """What served the LLM, for the report (and a warm-up of an external vLLM server)."""
    if args.llm == "real":
        return "real: services.llm (llama.cpp, Qwen2.5-0.5B-Instruct Q4_K_M GGUF)"
    if args.llm == "standin":
        return "calibrated stand-in (bench/llm_standin.py): " + json.loads(args.calibration.read_text())["source"]
    info = warm_up(args.llm_url, concurrency=args.llm_warmup)
    args.llm_warmup_info = info
    return f"vLLM {info['version']} OpenAI server at {args.llm_url} (model {info['model']}; {args.llm_note})"


def main() -> int:
    """Run the designs, print the tables, write JSON (+ PNG)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,2,4", help="concurrent calls per level, ascending")
    parser.add_argument("--designs", default="ours,seed")
    parser.add_argument("--target-ms", type=float, default=300.0, help="p95 response-latency target")
    parser.add_argument("--stop-ms", type=float, default=None, help="go on until p95 passes this (default: target)")
    parser.add_argument("--turns", type=int, default=2, help="scripted turns per call before the barge-in")
    parser.add_argument("--no-barge-in", dest="barge_in", action="store_false")
    parser.add_argument("--ramp-s", type=float, default=8.0, help="call starts spread over this many seconds")
    parser.add_argument(
        "--gateways", default="1", help="gateway processes (calls spread round-robin), or 'auto' (from the cores)"
    )
    parser.add_argument("--seed-stt-instances", type=int, default=4, help="STT processes in the seed design")
    parser.add_argument("--load-procs", type=int, default=1, help="processes running the simulated callers")
    parser.add_argument("--reply-timeout-s", type=float, default=60.0)
    parser.add_argument("--gpu", action="store_true", help="STT/TTS on CUDA (set STT_*/TTS_* paths in the env)")
    parser.add_argument("--llm", choices=["real", "standin", "vllm"], default="real")
    parser.add_argument("--llm-url", default="http://127.0.0.1:8000", help="--llm vllm: the running OpenAI server")
    parser.add_argument("--llm-note", default="weights: see docs/benchmarks.md", help="--llm vllm: what it serves")
    parser.add_argument("--llm-warmup", type=int, default=64, help="--llm vllm: concurrent warm-up requests")
    parser.add_argument("--stack-cpus", default=None, help="pin the stack to these cores, e.g. 0-11")
    parser.add_argument("--load-cpus", default=None, help="pin the load generator to these cores, e.g. 12-15")
    parser.add_argument("--calibration", type=Path, default=None, help="LLM stand-in step costs (JSON)")
    parser.add_argument("--usd-per-hour", type=float, default=None, help="price of the host, for the cost line")
    parser.add_argument("--host", default=None, help="what the host is, for the report")
    parser.add_argument("--log-dir", default="var/bench-capacity")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--png", type=Path, default=None)
    parser.add_argument("--plot-only", nargs="*", type=Path, default=None, help="redraw PNGs from JSON files")
    args = parser.parse_args()
    if args.plot_only:
        for path in args.plot_only:
            plot(json.loads(path.read_text()), path.with_suffix(".png"))
            _out(f"wrote {path.with_suffix('.png')}")
        return 0
    if args.llm == "standin" and args.calibration is None:
        parser.error("--llm standin needs --calibration")
    args.levels = [int(x) for x in args.levels.split(",")]
    args.stack_cpu_set, args.load_cpu_set = parse_cpus(args.stack_cpus), parse_cpus(args.load_cpus)
    pin(args.stack_cpu_set)  # the services inherit it; the load generator's workers re-pin themselves
    stack_cores = len(args.stack_cpu_set) if args.stack_cpu_set else (os.cpu_count() or 1)
    args.gateways = auto_gateways(stack_cores, max(args.levels)) if args.gateways == "auto" else int(args.gateways)
    logging.basicConfig(level=logging.WARNING)
    started = time.time()
    llm_source = _llm_source(args)
    results: list[dict[str, Any]] = []
    lines: list[Line] | None = None

    def report_of(designs: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "host": args.host or platform.node(),
            "cpu_count": os.cpu_count(),
            "stack_cpus": args.stack_cpus,
            "load_cpus": args.load_cpus,
            "started_at": started,
            "target_ms": args.target_ms,
            "target_metric": "respond_ms p95 (turn detected → first agent audio frame)",
            "llm": llm_source,
            "llm_warmup": getattr(args, "llm_warmup_info", None),
            "usd_per_hour": args.usd_per_hour,
            "script": {"turns": args.turns, "barge_in": args.barge_in, "ramp_s": args.ramp_s},
            "command": " ".join(sys.argv),
            "designs": designs,
        }

    def write(report: dict[str, Any]) -> None:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n")

    for design in args.designs.split(","):

        def checkpoint(levels: list[dict[str, Any]], design: str = design) -> None:
            write(report_of([*results, {"design": design, "partial": True, "levels": levels}]))

        result = run_design(design, args, lines, checkpoint)
        lines = result.pop("_lines")
        results.append(result)
    report = report_of(results)
    print_summary(report)
    if args.json:
        write(report)
        _out(f"wrote {args.json}")
    if args.png:
        plot(report, args.png)
        _out(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
