"""PyTorch Kokoro-82M backend (the GPU path), with weights rebuilt from the int8 ONNX graph.

The PyTorch ``kokoro`` package's own weights (``kokoro-v1_0.pth``) are not reachable from the
registries this project may use, but every weight of the model is in the kokoro-onnx graph:

* ``MatMulInteger``/``ConvInteger`` weights are int8/uint8 with per-tensor or per-channel
  ``scale``/``zero_point``: dequantised as ``(q - zero_point) * scale`` (ONNX ``DequantizeLinear``
  semantics). The scale is found by following the graph (``ConvInteger → Cast → Mul(a_scale·w_scale)``)
  because the quantiser de-duplicated identical scale/zero-point tensors under unrelated names.
  ``MatMul`` weights are stored ``(in, out)``: transposed into ``nn.Linear``'s ``(out, in)``.
* Weight-normed convolutions were folded by the exporter into one weight (``g·v/‖v‖``); we remove
  the ``weight_norm`` hooks from the PyTorch model and load that weight directly.
* ``DynamicQuantizeLSTM`` holds ``W (dirs, in, 4h)``, ``R (dirs, h, 4h)``, ``B (dirs, 8h)`` in ONNX gate
  order ``i, o, f, c``; PyTorch wants ``weight_ih (4h, in)`` in order ``i, f, g, o``.
* Module paths come from the ONNX node names (``/decoder/decoder/generator/resblocks.0/convs1.0/Conv_quant``
  → ``decoder.generator.resblocks.0.convs1.0``); repeated calls (``query_3``) and scopes the exporter
  flattened (``/encoder/F0.1`` → ``predictor.F0.1``) are resolved against the model's own modules,
  and every rebuilt tensor's shape must match its parameter.

The exported graph contains no random operators: the noise of Kokoro's harmonic-plus-noise source
(``SineGen``'s random initial phase and ``randn`` noise) was exported as zeros. :class:`TorchBackend`
does the same, so both backends are deterministic and comparable (see ``bench/tts_bench.py --equivalence``).

The model code is the ``kokoro`` package's (Apache-2.0, hexgrad/kokoro): ``kokoro.model.KModel``.
Its ``__init__`` imports ``misaki`` (G2P) which we do not need (we phonemise with espeak-ng as the
ONNX backend does), so only the submodules are imported.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

from services.tts.config import TTSSettings

log = logging.getLogger(__name__)

KOKORO_82M_CONFIG: dict[str, Any] = {
    "dim_in": 64,
    "dropout": 0.2,
    "hidden_dim": 512,
    "max_conv_dim": 512,
    "max_dur": 50,
    "multispeaker": True,
    "n_layer": 3,
    "n_mels": 80,
    "n_token": 178,
    "style_dim": 128,
    "text_encoder_kernel_size": 5,
    "istftnet": {
        "upsample_kernel_sizes": [20, 12],
        "upsample_rates": [10, 6],
        "gen_istft_hop_size": 5,
        "gen_istft_n_fft": 20,
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        "resblock_kernel_sizes": [3, 7, 11],
        "upsample_initial_channel": 512,
    },
    "plbert": {
        "hidden_size": 768,
        "num_attention_heads": 12,
        "intermediate_size": 2048,
        "max_position_embeddings": 512,
        "num_hidden_layers": 12,
        "dropout": 0.1,
    },
}
"""hexgrad/Kokoro-82M ``config.json`` without the vocabulary (tokens come from kokoro-onnx)."""


def import_kmodel() -> Any:
    """Import ``kokoro.model.KModel`` without running ``kokoro/__init__`` (which needs ``misaki``).

    Raises:
        ImportError: the ``kokoro`` package (or torch/transformers/loguru) is not installed.
    """
    if "kokoro.model" in sys.modules:
        return sys.modules["kokoro.model"].KModel
    spec = importlib.util.find_spec("kokoro")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the PyTorch `kokoro` package is not installed (pip install kokoro==0.9.4 --no-deps)")
    if "kokoro" not in sys.modules:
        pkg = types.ModuleType("kokoro")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["kokoro"] = pkg
    from kokoro.model import KModel

    return KModel


# ONNX → state dict ------------------------------------------------------------------------------
def _strip_call_suffix(part: str) -> str:
    """``query_3`` → ``query``, ``LayerNorm_1`` → ``LayerNorm`` (repeated calls of one module)."""
    return re.sub(r"_\d+$", "", part)


def _scope_candidates(node_name: str) -> list[str]:
    """ONNX node name → candidate dotted module paths of ``KModel`` (most likely first)."""
    parts = [_strip_call_suffix(p) for p in node_name.strip("/").split("/")[:-1]]
    path: list[str] = []
    for p in parts:
        if path and p.startswith(path[-1] + "."):  # "cnn.0" then "cnn.0.0"
            path[-1] = p
        else:
            path.append(p)
    dotted = ".".join(path)
    if dotted.startswith("decoder.decoder."):
        dotted = dotted[len("decoder.") :]
    elif dotted.startswith("encoder."):
        dotted = dotted[len("encoder.") :]
    return [dotted, "predictor." + dotted]


class _Graph:
    """Initialisers and producer/consumer maps of an ONNX graph."""

    def __init__(self, onnx_path: str) -> None:
        import onnx
        from onnx import numpy_helper

        model = onnx.load(onnx_path)
        self.nodes = list(model.graph.node)
        self.init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.consumers: dict[str, list[Any]] = {}
        self.producer: dict[str, Any] = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
            for o in n.output:
                self.producer[o] = n

    def weight_scale(self, node: Any, weight_input: int) -> np.ndarray:
        """Scale of a ``MatMulInteger``/``ConvInteger`` weight: follow ``Cast → Mul(·, a_scale·w_scale)``."""
        out = node.output[0]
        for cast in self.consumers.get(out, []):
            if cast.op_type != "Cast":
                continue
            for mul in self.consumers.get(cast.output[0], []):
                if mul.op_type != "Mul":
                    continue
                other = mul.input[1] if mul.input[0] == cast.output[0] else mul.input[0]
                prod = self.producer.get(other)
                if prod is not None and prod.op_type == "Mul":
                    for name in prod.input:
                        if name in self.init:
                            return self.init[name].astype(np.float32)
                if other in self.init:
                    return self.init[other].astype(np.float32)
        q_name = node.input[weight_input]
        base = q_name[: -len("_quantized")] if q_name.endswith("_quantized") else q_name
        if base + "_scale" in self.init:
            return self.init[base + "_scale"].astype(np.float32)
        raise KeyError(f"no scale found for {q_name} of {node.name}")

    def dequant(self, node: Any, w_index: int, zp_index: int, channel_axis: int) -> np.ndarray:
        q = self.init[node.input[w_index]].astype(np.float32)
        zp_name = node.input[zp_index] if len(node.input) > zp_index else ""
        zp = self.init[zp_name].astype(np.float32) if zp_name else np.zeros(1, np.float32)
        scale = self.weight_scale(node, w_index)
        shape = [1] * q.ndim
        if scale.size > 1:
            shape[channel_axis] = -1
        zshape = [1] * q.ndim
        if zp.size > 1:
            zshape[channel_axis] = -1
        return (q - zp.reshape(zshape)) * scale.reshape(shape)


def _lstm_tensors(g: _Graph, node: Any) -> dict[str, np.ndarray]:
    """``DynamicQuantizeLSTM`` → PyTorch ``nn.LSTM`` parameters (both directions)."""
    w_q, r_q = g.init[node.input[1]].astype(np.float32), g.init[node.input[2]].astype(np.float32)
    bias = g.init[node.input[3]].astype(np.float32)
    w_s, w_zp = g.init[node.input[8]].astype(np.float32), g.init[node.input[9]].astype(np.float32)
    r_s, r_zp = g.init[node.input[10]].astype(np.float32), g.init[node.input[11]].astype(np.float32)
    w = (w_q - w_zp[:, None, None]) * w_s[:, None, None]  # (dirs, in, 4h)
    r = (r_q - r_zp[:, None, None]) * r_s[:, None, None]  # (dirs, h, 4h)
    hidden = r.shape[1]

    def reorder(m: np.ndarray) -> np.ndarray:  # rows in ONNX order i,o,f,c → torch i,f,g,o
        i, o, f, c = (m[k * hidden : (k + 1) * hidden] for k in range(4))
        return np.concatenate([i, f, c, o], axis=0)

    out = {}
    for d, suffix in enumerate(("", "_reverse")):
        out[f"weight_ih_l0{suffix}"] = reorder(w[d].T)
        out[f"weight_hh_l0{suffix}"] = reorder(r[d].T)
        out[f"bias_ih_l0{suffix}"] = reorder(bias[d, : 4 * hidden])
        out[f"bias_hh_l0{suffix}"] = reorder(bias[d, 4 * hidden :])
    return out


def onnx_state_dict(onnx_path: str, model: Any) -> dict[str, np.ndarray]:
    """Rebuild ``model``'s (a ``KModel`` without weight norm) parameters from the kokoro-onnx graph.

    Args:
        onnx_path: the int8 ``kokoro-v1.0.int8.onnx``.
        model: the ``KModel`` whose parameter names and shapes are the targets.
    Returns:
        name → float32 array for every parameter of ``model``.
    Raises:
        KeyError: a parameter of ``model`` could not be found in the graph or has the wrong shape.
    """
    g = _Graph(onnx_path)
    params = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    out: dict[str, np.ndarray] = {}

    def put(module: str | list[str], leaf: str, value: np.ndarray) -> None:
        for cand in [module] if isinstance(module, str) else module:
            key = f"{cand}.{leaf}"
            if key in params and tuple(value.shape) == params[key]:
                out.setdefault(key, value.astype(np.float32))
                return
        raise KeyError(f"no parameter {module}.{leaf} with shape {value.shape}")

    for node in g.nodes:
        cands = _scope_candidates(node.name)
        if node.op_type == "MatMulInteger":
            w = g.dequant(node, 1, 3, channel_axis=1)
            put(cands, "weight", w.T)
        elif node.op_type == "ConvInteger":
            put(cands, "weight", g.dequant(node, 1, 3, channel_axis=0))
        elif node.op_type in ("Conv", "ConvTranspose") and node.input[1] in g.init:
            if "istft" in node.name or "stft" in node.name:
                continue  # fixed (i)STFT basis, not a parameter
            put(cands, "weight", g.init[node.input[1]])
        elif node.op_type == "MatMul" and len(node.input) > 1 and node.input[1] in g.init:
            put(cands, "weight", g.init[node.input[1]].T)
        elif node.op_type == "DynamicQuantizeLSTM":
            for leaf, value in _lstm_tensors(g, node).items():
                put(cands, leaf, value)
        elif node.op_type == "Gather" and node.input[0].endswith("_quantized"):
            base = node.input[0][: -len("_quantized")]
            q = g.init[node.input[0]].astype(np.float32)
            zp = g.init.get(base + "_zero_point", np.zeros(1)).astype(np.float32)
            scale = g.init[base + "_scale"].astype(np.float32)
            name = base[len("encoder.") :] if base.startswith("encoder.") else base
            put(name.rsplit(".", 1)[0], "weight", (q - zp) * scale)
    for name, value in g.init.items():  # named float initialisers: biases, norms, AdaIN alphas
        if value.dtype != np.float32 or not name.startswith(("encoder.", "decoder.decoder.")):
            continue
        key = name[len("decoder.") :] if name.startswith("decoder.decoder.") else name[len("encoder.") :]
        if key in params and key not in out and tuple(value.shape) == params[key]:
            out[key] = value
    missing = [k for k in params if k not in out and not _is_buffer_like(k)]
    if missing:
        raise KeyError(f"{len(missing)} parameters not found in the ONNX graph, e.g. {missing[:5]}")
    return out


def _is_buffer_like(key: str) -> bool:
    """State-dict entries that are not learned weights: STFT windows, position ids, BERT's unused
    pooler, and the affine parameters of AdaIN's ``InstanceNorm1d`` (kokoro sets ``affine=True`` only
    to work around an old exporter bug; they keep their initial 1/0 and are not in any checkpoint)."""
    if re.search(r"(norm[12]?|adain[12]\.\d+)\.norm\.(weight|bias)$", key) or key.startswith("bert.pooler."):
        return True
    return any(s in key for s in ("position_ids", "window", "stft", "num_batches_tracked", "running_"))


def build_model(settings: TTSSettings) -> Any:
    """``KModel`` on ``settings.device`` in eval mode with weights from the ONNX graph (cached as .pt).

    Raises:
        ImportError: torch, transformers or kokoro missing.
        KeyError: the ONNX graph does not hold every weight (see :func:`onnx_state_dict`).
    """
    import torch

    kmodel_cls = import_kmodel()
    cfg = dict(KOKORO_82M_CONFIG, vocab={})
    empty = Path(settings.torch_weights_path).with_suffix(".empty.pt")
    if not empty.exists():
        empty.parent.mkdir(parents=True, exist_ok=True)
        torch.save({}, empty)
    model = kmodel_cls(repo_id="hexgrad/Kokoro-82M", config=cfg, model=str(empty), disable_complex=False)
    for module in model.modules():
        if hasattr(module, "weight_g"):
            torch.nn.utils.remove_weight_norm(module)
    cache = Path(settings.torch_weights_path)
    if cache.exists():
        state = torch.load(cache, map_location="cpu", weights_only=True)
    else:
        state = {k: torch.from_numpy(v) for k, v in onnx_state_dict(settings.model_path, model).items()}
        torch.save(state, cache)
    missing, unexpected = model.load_state_dict(state, strict=False)
    learned = [k for k in missing if not _is_buffer_like(k)]
    if learned or unexpected:
        raise KeyError(f"weights do not fit KModel: missing {learned[:5]}, unexpected {unexpected[:5]}")
    _zero_source_noise()
    dtype = getattr(torch, settings.torch_dtype)
    return model.eval().to(settings.device, dtype=dtype)


def _zero_source_noise() -> None:
    """Make Kokoro's harmonic source deterministic like the exported graph (no random phase/noise)."""
    import torch

    istft = sys.modules["kokoro.istftnet"]

    class _NoNoise(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            return getattr(torch, name)

        @staticmethod
        def rand(*size: Any, **kw: Any) -> Any:
            return torch.zeros(*size, **kw)

        @staticmethod
        def randn_like(x: Any, **kw: Any) -> Any:
            return torch.zeros_like(x, **kw)

    istft.torch = _NoNoise("torch_without_noise")  # type: ignore[attr-defined]


class TorchBackend:
    """Kokoro ``KModel`` on ``TTS_DEVICE`` (``cuda`` on the GPU box).

    With ``TTS_MAX_BATCH=1`` (default) every window gets its own forward pass, bit-for-bit what
    ``KModel.forward_with_tokens`` computes. With ``TTS_MAX_BATCH>1`` the windows the scheduler
    collected run as one padded pass (:func:`forward_batch`): ~8× the throughput per window on an H100
    (see docs/benchmarks.md, TTS section), but not exact for windows of different lengths, because the prosody
    predictor and the iSTFTNet decoder normalise over time (AdaIN instance norm) and see the padding.
    """

    name = "torch"

    def __init__(self, settings: TTSSettings) -> None:
        import torch

        self.torch = torch
        self.device = settings.device
        self.model = build_model(settings)
        self.dtype = getattr(torch, settings.torch_dtype)
        self.max_batch = settings.max_batch

    def infer(self, items: list[Any]) -> list[np.ndarray]:
        """One forward pass per :class:`services.tts.engine.InferItem`; float32 (m,) 24 kHz each."""
        torch = self.torch
        if self.max_batch > 1 and len(items) > 1:
            batched: list[np.ndarray] = []
            for start in range(0, len(items), self.max_batch):
                batched += forward_batch(self, items[start : start + self.max_batch])
            return batched
        out = []
        with torch.inference_mode():
            for item in items:
                ids = torch.tensor([[0, *item.tokens.tolist(), 0]], dtype=torch.long, device=self.device)
                ref = torch.from_numpy(np.asarray(item.style, dtype=np.float32)).to(self.device, self.dtype)
                audio, _ = self.model.forward_with_tokens(ids, ref, item.speed)
                out.append(audio.float().cpu().numpy().ravel())
        return out


def _packed_lstm(torch: Any, lstm: Any, x: Any, lengths: Any) -> Any:
    """Run a batch-first bidirectional LSTM over padded ``x`` (B, T, C) so that padding never enters
    the backward direction; returns (B, T, 2h) with zeros at padded steps."""
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out


def forward_batch(backend: TorchBackend, items: list[Any]) -> list[np.ndarray]:
    """One padded forward pass over several windows (``KModel.forward_with_tokens`` generalised to B>1).

    Text side and durations are exact (attention mask, packed LSTMs); the F0/energy predictor and
    the decoder are not when lengths differ, because their AdaIN instance norms average over the
    padded frames too.

    Returns:
        float32 (m_b,) 24 kHz audio per item (padding frames cut off by predicted duration).
    """
    torch = backend.torch
    model, dev = backend.model, backend.device
    lens = [len(it.tokens) + 2 for it in items]
    t_max = max(lens)
    ids = torch.zeros((len(items), t_max), dtype=torch.long, device=dev)
    for b, it in enumerate(items):
        ids[b, 1 : lens[b] - 1] = torch.as_tensor(it.tokens, device=dev)
    ref = torch.from_numpy(np.stack([np.asarray(it.style, np.float32).reshape(-1) for it in items]))
    ref = ref.to(dev, backend.dtype)
    lengths = torch.tensor(lens, device=dev)
    mask = torch.arange(t_max, device=dev)[None, :] >= lengths[:, None]
    speed = torch.tensor([it.speed for it in items], device=dev)[:, None]
    with torch.inference_mode():
        bert = model.bert(ids, attention_mask=(~mask).int())
        d_en = model.bert_encoder(bert).transpose(-1, -2)
        s = ref[:, 128:]
        d = model.predictor.text_encoder(d_en, s, lengths, mask)
        x = _packed_lstm(torch, model.predictor.lstm, d, lengths)
        dur = torch.sigmoid(model.predictor.duration_proj(x)).sum(-1) / speed
        dur = torch.round(dur).clamp(min=1).long().masked_fill(mask, 0)
        frames = dur.sum(-1)
        aln = torch.zeros((len(items), t_max, int(frames.max())), device=dev)
        for b in range(len(items)):
            idx = torch.repeat_interleave(torch.arange(t_max, device=dev), dur[b])
            aln[b, idx, torch.arange(idx.numel(), device=dev)] = 1
        en = d.transpose(-1, -2) @ aln
        shared = _packed_lstm(torch, model.predictor.shared, en.transpose(-1, -2), frames).transpose(-1, -2)
        f0, n = shared, shared
        for block in model.predictor.F0:
            f0 = block(f0, s)
        for block in model.predictor.N:
            n = block(n, s)
        f0 = model.predictor.F0_proj(f0).squeeze(1)
        n = model.predictor.N_proj(n).squeeze(1)
        asr = model.text_encoder(ids, lengths, mask) @ aln
        audio = model.decoder(asr, f0, n, ref[:, :128]).reshape(len(items), -1)
    per_frame = audio.shape[-1] // aln.shape[-1]
    return [audio[b, : int(frames[b]) * per_frame].float().cpu().numpy() for b in range(len(items))]
