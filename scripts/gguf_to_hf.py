"""Convert the project's GGUF LLM to Hugging Face format for vLLM (``make llm-vllm``).

vLLM loads Hugging Face checkpoints; our CPU model ships as a Q4_K_M GGUF. transformers reads the
GGUF (``gguf_file=``), dequantizes it, and ``save_pretrained`` writes safetensors + tokenizer +
chat template. Runs in the vLLM virtualenv (it has torch and transformers; ``gguf`` is installed
beside them). Idempotent: skips if the output has ``config.json``.

Usage: ``python scripts/gguf_to_hf.py [--gguf FILE] [--out DIR]``
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GGUF = ROOT / "models" / "llm" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
OUT = ROOT / "models" / "llm-hf"


def main() -> int:
    """Convert once; log where the checkpoint is."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gguf", type=Path, default=GGUF)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log = logging.getLogger("gguf_to_hf")
    if (args.out / "config.json").is_file():
        log.info("HF checkpoint already at %s", args.out)
        return 0
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(args.gguf.parent), args.gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.bfloat16)
    # The weights are dequantized on load; transformers 5 still tags the model as GGUF-quantized,
    # which save_pretrained refuses: drop the tag so plain bfloat16 safetensors are written.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
