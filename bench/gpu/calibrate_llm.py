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


def main() -> int:
    """Time prefill and decode steps; write the calibration JSON."""
    import torch
    from transformers import DynamicCache, Qwen2Config, Qwen2ForCausalLM

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--context", type=int, default=600, help="KV length during decode (prompt + history)")
    parser.add_argument("--repeats", type=int, default=5)
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
        for b in decode_batch:
            ids = torch.randint(0, config.vocab_size, (b, args.context), device="cuda")
            cache = DynamicCache()
            model(ids, past_key_values=cache, use_cache=True)
            step = torch.randint(0, config.vocab_size, (b, 1), device="cuda")
            model(step, past_key_values=cache, use_cache=True)  # warm-up
            # Each timed step appends one position to the cache (KV length grows by `repeats`).
            decode_ms.append(timed(functools.partial(model, step, past_key_values=cache, use_cache=True)))
            sys.stdout.write(f"decode batch {b:3d}: {decode_ms[-1]:.1f} ms/step\n")
            cache = None
            torch.cuda.empty_cache()
    name = torch.cuda.get_device_name(0)
    source = (
        f"Qwen2.5-0.5B architecture, random bf16 weights, transformers {__import__('transformers').__version__} "
        f"eager + SDPA (no CUDA graphs), torch {torch.__version__}, on {name}; decode at KV length "
        f"{args.context}; medians of {args.repeats}. An upper bound of vLLM's step costs."
    )
    data = {
        "source": source,
        "prefill": {"tokens": prefill_tokens, "ms": prefill_ms},
        "decode": {"batch": decode_batch, "ms": decode_ms},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    sys.stdout.write(json.dumps(data) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
