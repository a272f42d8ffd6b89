"""The project's GGUF LLM as a Hugging Face folder for vLLM on the GPU machine.

Used by ``bench/gpu/make_vllm_kit.sh`` (build machine) and ``bench/gpu/vllm.sh`` (GPU machine);
the kit's dependency checks are in ``bench/gpu/vllm_deps.py``.

``tokenizer --gguf F --out DIR``  (build machine: transformers + gguf + CPU torch)
    The tokenizer as ``scripts/gguf_to_hf.py`` makes it (``AutoTokenizer.from_pretrained(folder,
    gguf_file=name)``), fixed for vLLM: eos ``<|im_end|>`` and all 22 Qwen2.5 added tokens
    (151643-151664, read from the GGUF's vocabulary) registered in ``tokenizer.json``; the loader
    registers only 3, and ``<tool_call>`` then splits into BPE pieces, which breaks the hermes
    tool parser. Plus ``config.json`` (transformers' own GGUF config mapping, tidied) and
    Qwen2.5-Instruct's ``generation_config.json``. No weights.
``weights --gguf F --out DIR``  (GPU machine: the gguf package + numpy + torch)
    Dequantizes every tensor with ``gguf.quants.dequantize`` and writes ``model.safetensors`` in
    bfloat16 under Qwen2's Hugging Face names (explicit map below, no Q/K permutation: Qwen2 uses
    NEOX rope), checking names and shapes against ``DIR/config.json`` first. Needs no transformers.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

# Qwen2.5's added tokens: 151643-151656 are special, <tool_call> ... <|file_sep|> are not (as in
# Qwen2.5-Instruct's tokenizer_config.json). The names are checked against the GGUF's vocabulary.
ADDED_FIRST, ADDED_LAST, LAST_SPECIAL = 151643, 151664, 151656
QWEN25_ADDED = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>",
]  # fmt: skip
GENERATION_CONFIG = {  # Qwen2.5-Instruct's
    "bos_token_id": 151643,
    "pad_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "repetition_penalty": 1.1,
    "temperature": 0.7,
    "top_p": 0.8,
    "top_k": 20,
}

# GGUF (llama.cpp) tensor names -> Qwen2ForCausalLM's.
GLOBAL_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}

# Python packages on the GPU machine (KINDS.md, "Python packages already there", read 2026-11-17),
# with the versions its 'pip list' row gives; None = there, version not recorded.


def say(msg: str) -> None:
    """One line to stdout, flushed (pip runs in between and writes to the same stream)."""
    sys.stdout.write(f"{msg}\n")
    sys.stdout.flush()


# ----------------------------------------------------------------------------------- tokenizer
def _gguf_vocab(gguf_path: Path) -> tuple[list[str], list[int]]:
    import gguf

    reader = gguf.GGUFReader(str(gguf_path))
    return (
        list(reader.fields["tokenizer.ggml.tokens"].contents()),
        [int(t) for t in reader.fields["tokenizer.ggml.token_type"].contents()],
    )


def build_tokenizer(gguf_path: Path, out: Path) -> None:
    """Tokenizer + config.json + generation_config.json (no weights) into ``out``."""
    from transformers import AutoConfig, AutoTokenizer

    tokens, types = _gguf_vocab(gguf_path)
    names = tokens[ADDED_FIRST : ADDED_LAST + 1]
    if names != QWEN25_ADDED:
        raise SystemExit(f"added tokens in the GGUF differ from Qwen2.5's: {names}")
    # GGUF token types: 3 = control, 4 = user-defined; all 22 must be one of those.
    bad = [(i, types[i]) for i in range(ADDED_FIRST, ADDED_LAST + 1) if types[i] not in (3, 4)]
    if bad:
        raise SystemExit(f"unexpected GGUF token types for the added tokens: {bad}")

    folder, name = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    tok.eos_token = "<|im_end|>"
    if tok.pad_token is None:
        tok.pad_token = "<|endoftext|>"
    if not tok.chat_template or "<tool_call>" not in tok.chat_template:
        raise SystemExit("the GGUF's chat template has no hermes <tool_call> section")
    out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out)

    tj_path = out / "tokenizer.json"
    tj = json.loads(tj_path.read_text())
    have = {t["id"]: t for t in tj.get("added_tokens", [])}
    for i, content in enumerate(QWEN25_ADDED, start=ADDED_FIRST):
        have[i] = {
            "id": i,
            "content": content,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": i <= LAST_SPECIAL,
        }
    tj["added_tokens"] = [have[i] for i in sorted(have)]
    tj_path.write_text(json.dumps(tj, ensure_ascii=False, indent=2) + "\n")
    # tokenizer_config.json: drop any stale added_tokens_decoder (tokenizer.json is the source).
    tc_path = out / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text())
    for key in ("added_tokens_decoder", "is_local", "local_files_only", "model_type"):
        tc.pop(key, None)
    tc.update(eos_token="<|im_end|>", unk_token=None, model_max_length=131072, clean_up_tokenization_spaces=False)
    tc_path.write_text(json.dumps(tc, ensure_ascii=False, indent=2) + "\n")

    cfg = AutoConfig.from_pretrained(folder, gguf_file=name)
    cfg.architectures = ["Qwen2ForCausalLM"]
    cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = 151643, 151645, 151643
    cfg.rms_norm_eps = 1e-6  # the GGUF holds 1e-6 as float32 (9.99999997e-07)
    cfg.max_window_layers = cfg.num_hidden_layers
    cfg.dtype = "bfloat16"
    for attr in ("_name_or_path", "_model_name_or_path", "quantization_config"):
        if hasattr(cfg, attr):
            try:
                delattr(cfg, attr)
            except AttributeError:
                pass
    cfg.save_pretrained(out)
    c = json.loads((out / "config.json").read_text())
    for key in ("_name_or_path", "_model_name_or_path", "quantization_config"):
        c.pop(key, None)
    (out / "config.json").write_text(json.dumps(c, indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2) + "\n")
    verify_tokenizer(out)


def verify_tokenizer(folder: Path) -> None:
    """Reload the saved folder and check the things vLLM relies on."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))

    def shown(ids: list[int]) -> str:  # what vLLM returns by default
        return tok.decode(ids, skip_special_tokens=True)

    checks = {
        "<tool_call> is one token 151657": tok.encode("<tool_call>", add_special_tokens=False) == [151657],
        "</tool_call> is one token 151658": tok.encode("</tool_call>", add_special_tokens=False) == [151658],
        "<|im_end|> is 151645": tok.encode("<|im_end|>", add_special_tokens=False) == [151645],
        "eos is <|im_end|>": tok.eos_token == "<|im_end|>" and tok.eos_token_id == 151645,
        "<tool_call> survives skip_special_tokens": "<tool_call>" in shown([151657, 9707]),
        "<|im_end|> is skipped as special": "<|im_end|>" not in shown([9707, 151645]),
    }  # fmt: skip
    params = {"type": "object", "properties": {"day": {"type": "string"}}}
    tools = [{"type": "function", "function": {"name": "book", "description": "Book a visit", "parameters": params}}]
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tools=tools, tokenize=False, add_generation_prompt=True
    )
    checks["chat template renders tools (hermes)"] = "<tools>" in text and "<tool_call>" in text
    checks["chat template ends with the assistant turn"] = text.endswith("<|im_start|>assistant\n")
    failed = [k for k, ok in checks.items() if not ok]
    for k, ok in checks.items():
        say(f"  tokenizer: {'ok ' if ok else 'FAIL'} {k}")
    if failed:
        raise SystemExit(f"tokenizer checks failed: {failed}")


# ------------------------------------------------------------------------------------- weights
def expected_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """Qwen2ForCausalLM's tensor names and shapes for ``cfg`` (config.json)."""
    h, inter, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or h // heads
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, h), "model.norm.weight": (h,)}
    if not cfg.get("tie_word_embeddings", False):
        shapes["lm_head.weight"] = (vocab, h)
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}."
        shapes.update({
            p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (heads * hd, h), p + "self_attn.q_proj.bias": (heads * hd,),
            p + "self_attn.k_proj.weight": (kv * hd, h), p + "self_attn.k_proj.bias": (kv * hd,),
            p + "self_attn.v_proj.weight": (kv * hd, h), p + "self_attn.v_proj.bias": (kv * hd,),
            p + "self_attn.o_proj.weight": (h, heads * hd),
            p + "mlp.gate_proj.weight": (inter, h), p + "mlp.up_proj.weight": (inter, h),
            p + "mlp.down_proj.weight": (h, inter),
        })  # fmt: skip
    return shapes


def hf_name(gguf_name: str) -> str:
    """``blk.3.attn_q.bias`` -> ``model.layers.3.self_attn.q_proj.bias``."""
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.(weight|bias)", gguf_name)
    if m:
        if m[2] not in LAYER_NAMES:
            raise SystemExit(f"unknown GGUF tensor {gguf_name}")
        return f"model.layers.{m[1]}.{LAYER_NAMES[m[2]]}.{m[3]}"
    base, _, kind = gguf_name.rpartition(".")
    if base not in GLOBAL_NAMES:
        raise SystemExit(f"unknown GGUF tensor {gguf_name}")
    return f"{GLOBAL_NAMES[base]}.{kind}"


def dequantize(gguf_path: Path, out: Path) -> None:
    """bfloat16 ``model.safetensors`` in ``out`` (which must hold config.json already)."""
    import time

    import gguf
    import numpy as np
    import torch
    from safetensors.torch import save_file

    cfg = json.loads((out / "config.json").read_text())
    want = expected_shapes(cfg)
    reader = gguf.GGUFReader(str(gguf_path))
    names = {t.name: hf_name(t.name) for t in reader.tensors}
    got = set(names.values())
    if got != set(want):
        raise SystemExit(
            f"GGUF tensors do not match config.json: missing {sorted(set(want) - got)[:8]}, "
            f"extra {sorted(got - set(want))[:8]} (tie_word_embeddings={cfg.get('tie_word_embeddings')})"
        )
    t0 = time.time()
    tensors = {}
    for t in reader.tensors:
        arr = gguf.quants.dequantize(t.data, t.tensor_type)
        arr = np.array(arr, dtype=np.float32).reshape([int(d) for d in reversed(t.shape)])
        name = names[t.name]
        if tuple(arr.shape) != want[name]:
            raise SystemExit(f"{t.name} -> {name}: shape {arr.shape}, config wants {want[name]}")
        if not np.isfinite(arr).all():
            raise SystemExit(f"{t.name}: non-finite values after dequantization")
        tensors[name] = torch.from_numpy(arr).to(torch.bfloat16).contiguous()
    tmp = out / "model.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.chmod(0o644)
    tmp.replace(out / "model.safetensors")
    n = sum(v.numel() for v in tensors.values())
    say(f"  weights: {len(tensors)} tensors, {n / 1e6:.1f} M parameters, bf16, {time.time() - t0:.1f} s")


def main() -> int:
    """CLI: ``tokenizer``, ``weights``, ``verify-tokenizer``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for cmd in ("tokenizer", "weights"):
        p = sub.add_parser(cmd)
        p.add_argument("--gguf", type=Path, required=True)
        p.add_argument("--out", type=Path, required=True)
    sub.add_parser("verify-tokenizer").add_argument("folder", type=Path)
    args = parser.parse_args()
    if args.cmd == "tokenizer":
        build_tokenizer(args.gguf, args.out)
    elif args.cmd == "weights":
        dequantize(args.gguf, args.out)
    elif args.cmd == "verify-tokenizer":
        verify_tokenizer(args.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
