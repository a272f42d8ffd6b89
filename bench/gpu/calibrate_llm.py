"""Measure the step costs of Qwen2.5-0.5B-Instruct on a GPU, for :mod:`bench.llm_standin`.

vLLM cannot run on the lent GPU (see ``../shared/gpu/README.md``), and its weights are too big to
carry there, so this times the **same architecture** (Qwen2.5-0.5B's config: 24 layers, hidden
896, 14 query / 2 KV heads, vocabulary 151 936) with random bf16 weights in Hugging Face
``transformers`` (eager PyTorch, SDPA attention, no CUDA graphs) on the machine's own torch.
Step time does not depend on the weights' values. Eager PyTorch launches every kernel from Python,
so these costs are an upper bound of vLLM's (which replays decode steps as CUDA graphs).

Writes ``{"source", "prefill": {"tokens", "ms"}, "decode": {"batch", "ms"}}`` (medians).

Usage (on the GPU box): ``python3 bench/gpu/calibrate_llm.py --out $OUT/llm-calibration.json``
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

QWEN25_05B = {
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
    "rope_theta": 1_000_000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
"""``config.json`` of Qwen/Qwen2.5-0.5B-Instruct (the fields that shape compute)."""


def decode_graph_ms(model, config, batch: int, context: int, timed) -> float | None:
    """One decode step over a static KV cache captured as a CUDA graph and replayed (as vLLM
    runs decode); ``None`` if this transformers version cannot be captured."""
    import torch
    from transformers import StaticCache

    try:
        try:
            cache = StaticCache(
                config=config, max_batch_size=batch, max_cache_len=context + 8, device="cuda", dtype=torch.bfloat16
            )
        except TypeError:
            cache = StaticCache(config=config, max_cache_len=context + 8)
        ids = torch.randint(0, config.vocab_size, (batch, context), device="cuda")
        model(ids, past_key_values=cache, cache_position=torch.arange(context, device="cuda"), use_cache=True)
        step = torch.randint(0, config.vocab_size, (batch, 1), device="cuda")
        pos = torch.tensor([context], device="cuda")
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                model(step, past_key_values=cache, cache_position=pos, use_cache=True)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(step, past_key_values=cache, cache_position=pos, use_cache=True)
        return float(timed(graph.replay))
    except Exception as exc:  # report and fall back to the eager numbers
        sys.stdout.write(f"CUDA graph capture failed at batch {batch}: {type(exc).__name__}: {exc}\n")
        return None


def main() -> int:
    """Time prefill and decode steps; write the calibration JSON."""
    import torch
    from transformers import DynamicCache, Qwen2Config, Qwen2ForCausalLM

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--context", type=int, default=600, help="KV length during decode (prompt + history)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cuda-graphs", action="store_true", help="also time decode steps replayed as CUDA graphs")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = Qwen2Config(**QWEN25_05B, attn_implementation="sdpa")
    model = Qwen2ForCausalLM(config).to(device="cuda", dtype=torch.bfloat16).eval()

    def timed(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(args.repeats):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)

    prefill_tokens = [16, 128, 512, 1024, 2048, 4096, 8192]
    prefill_ms = []
    with torch.inference_mode():
        for n in prefill_tokens:
            ids = torch.randint(0, config.vocab_size, (1, n), device="cuda")
            model(ids)  # warm-up
            prefill_ms.append(timed(functools.partial(model, ids, use_cache=True)))
            sys.stdout.write(f"prefill {n:5d} tokens: {prefill_ms[-1]:.1f} ms\n")
        decode_batch = [1, 4, 16, 32, 64, 128, 256]
        decode_ms = []
        graphed: list[float] = []
        for b in decode_batch:
            ids = torch.randint(0, config.vocab_size, (b, args.context), device="cuda")
            cache = DynamicCache()
            model(ids, past_key_values=cache, use_cache=True)
            step = torch.randint(0, config.vocab_size, (b, 1), device="cuda")
            model(step, past_key_values=cache, use_cache=True)  # warm-up
            # Each timed step appends one position to the cache (KV length grows by `repeats`).
            decode_ms.append(timed(functools.partial(model, step, past_key_values=cache, use_cache=True)))
            cache = None
            torch.cuda.empty_cache()
            graph_ms = decode_graph_ms(model, config, b, args.context, timed) if args.cuda_graphs else None
            if graph_ms is not None:
                graphed.append(graph_ms)
            sys.stdout.write(f"decode batch {b:3d}: {decode_ms[-1]:.1f} ms/step eager, {graph_ms} ms as a CUDA graph\n")
            torch.cuda.empty_cache()
    name = torch.cuda.get_device_name(0)
    source = (
        f"Qwen2.5-0.5B architecture, random bf16 weights, transformers {__import__('transformers').__version__} "
        f"eager + SDPA (no CUDA graphs), torch {torch.__version__}, on {name}; decode at KV length "
        f"{args.context}; medians of {args.repeats}. An upper bound of vLLM's step costs."
    )
    eager_ms = decode_ms
    if args.cuda_graphs and len(graphed) == len(decode_batch):
        decode_ms = graphed  # what an engine that replays decode steps as CUDA graphs (vLLM) pays
        source = source.replace(
            "eager + SDPA (no CUDA graphs)", "SDPA, decode steps captured and replayed as CUDA graphs (static KV cache)"
        ).replace("An upper bound of vLLM's step costs.", "Prefill eager (an upper bound).")
    data = {
        "source": source,
        "decode_eager_ms": eager_ms,
        "prefill": {"tokens": prefill_tokens, "ms": prefill_ms},
        "decode": {"batch": decode_batch, "ms": decode_ms},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    sys.stdout.write(json.dumps(data) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
