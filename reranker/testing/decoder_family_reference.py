"""A float64 numpy forward pass of the decoder families, written from their modelling code.

It never reads the ONNX graph: weights come from ``model.safetensors`` through the
``safetensors`` package and each sequence runs alone on its real tokens (no padding), one head
at a time, as the Hugging Face / authors' code computes it:

* Llama: RMSNorm, rotary positions (``default`` or ``llama3`` frequency scaling),
  grouped-query attention (``repeat_kv`` order), SwiGLU;
* Qwen2 = Llama + biases on q/k/v; Qwen3 = Qwen2 without the biases + a per-head RMSNorm of q
  and k; Gemma = Llama + ``(1 + w)`` RMSNorm, embeddings times ``sqrt(hidden)``, GELU (tanh) MLP;
  MiniCPM = Llama + embeddings times ``scale_emb``, residual branches times
  ``scale_depth / sqrt(layers)``; Nemotron's bidirectional Llama = Llama without the causal mask.

:func:`layer_states` returns the hidden state entering every layer and the last one's output
(``L + 1`` arrays), so layerwise heads can read any of them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Variant",
    "layer_states",
    "load_float64",
    "load_tokenizer",
    "only_second",
    "rms_norm",
    "rope_inv_freq",
]


@dataclass(frozen=True)
class Variant:
    """How a family differs from Llama."""

    qkv_bias: bool = False
    qk_norm: bool = False
    norm_offset: float = 0.0
    embed_scale: float = 1.0
    residual_scale: float = 1.0
    activation: str = "silu"
    causal: bool = True


def load_float64(folder: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``config.json`` and every weight of ``model.safetensors`` as float64."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    weights = load_file(str(folder / "model.safetensors"))
    return config, {k: v.astype(np.float64) for k, v in weights.items()}


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float, offset: float = 0.0) -> np.ndarray:
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * (offset + weight)


def rope_inv_freq(config: dict[str, Any], head_dim: int) -> np.ndarray:
    """Rotary frequencies, with Llama 3's piecewise scaling when ``rope_scaling`` asks for it."""
    scaling = config.get("rope_scaling") or config.get("rope_parameters") or {}
    theta = float(scaling.get("rope_theta", config.get("rope_theta", 10000.0)))
    inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    kind = scaling.get("rope_type") or scaling.get("type") or "default"
    if kind == "default":
        return inv_freq
    if kind != "llama3":
        raise ValueError(f"reference knows rope_type default and llama3, not {kind!r}")
    factor = float(scaling["factor"])
    low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
    old = float(scaling["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > old / low, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    medium = (wavelen >= old / high) & (wavelen <= old / low)
    return np.where(medium, (1 - smooth) * scaled / factor + smooth * scaled, scaled)


def _rotate(x: np.ndarray, angles: np.ndarray) -> np.ndarray:
    half = x.shape[-1] // 2
    emb = np.concatenate([angles, angles], axis=-1)
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * np.cos(emb) + rotated * np.sin(emb)


def _act(x: np.ndarray, kind: str) -> np.ndarray:
    if kind == "silu":
        return x / (1.0 + np.exp(-x))
    if kind == "gelu_tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    raise ValueError(f"unknown activation {kind!r}")


def layer_states(
    config: dict[str, Any], w: dict[str, np.ndarray], ids: np.ndarray, variant: Variant,
    *, layers: int | None = None,
) -> list[np.ndarray]:
    """Hidden states ``[n, hidden]`` entering layer 0..``layers``-1 and leaving the last one.

    Args:
        layers: stop after this many layers (default every layer of ``config``).
    """
    eps = float(config.get("rms_norm_eps", 1e-6))
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or config["hidden_size"] // heads)
    inv_freq = rope_inv_freq(config, head_dim)
    n = len(ids)
    angles = np.outer(np.arange(n, dtype=np.float64), inv_freq)
    x = w["model.embed_tokens.weight"][ids] * variant.embed_scale
    future = np.triu(np.ones((n, n), dtype=bool), k=1)
    states = [x]
    off = variant.norm_offset
    for i in range(int(config["num_hidden_layers"]) if layers is None else layers):
        p = f"model.layers.{i}"
        h = rms_norm(x, w[f"{p}.input_layernorm.weight"], eps, off)

        def proj(part: str, h: np.ndarray = h, p: str = p) -> np.ndarray:
            out = h @ w[f"{p}.self_attn.{part}_proj.weight"].T
            if variant.qkv_bias:
                out = out + w[f"{p}.self_attn.{part}_proj.bias"]
            return out

        q = proj("q").reshape(n, heads, head_dim)
        k = proj("k").reshape(n, kv_heads, head_dim)
        v = proj("v").reshape(n, kv_heads, head_dim)
        if variant.qk_norm:
            q = rms_norm(q, w[f"{p}.self_attn.q_norm.weight"], eps)
            k = rms_norm(k, w[f"{p}.self_attn.k_norm.weight"], eps)
        context = np.zeros((n, heads, head_dim))
        for head in range(heads):
            kv = head // (heads // kv_heads)
            scores = _rotate(q[:, head], angles) @ _rotate(k[:, kv], angles).T / math.sqrt(head_dim)
            if variant.causal:
                scores[future] = -np.inf
            scores -= scores.max(axis=1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=1, keepdims=True)
            context[:, head] = probs @ v[:, kv]
        attn = context.reshape(n, heads * head_dim) @ w[f"{p}.self_attn.o_proj.weight"].T
        x = x + attn * variant.residual_scale
        h = rms_norm(x, w[f"{p}.post_attention_layernorm.weight"], eps, off)
        gate = h @ w[f"{p}.mlp.gate_proj.weight"].T
        up = h @ w[f"{p}.mlp.up_proj.weight"].T
        x = x + ((_act(gate, variant.activation) * up) @ w[f"{p}.mlp.down_proj.weight"].T
                 * variant.residual_scale)
        states.append(x)
    return states


def only_second(first: list[int], second: list[int], max_length: int) -> list[int]:
    """``tokenizer.prepare_for_model(first, second, truncation="only_second",
    max_length=max_length, add_special_tokens=False)`` of transformers 4 (which the authors'
    code calls; transformers 5 removed it): the second sequence loses its end; when it is not
    long enough to absorb the overflow, nothing is cut (transformers logs an error)."""
    overflow = len(first) + len(second) - max_length
    if overflow > 0 and len(second) > overflow:
        second = second[:-overflow]
    return first + second


def load_tokenizer(folder: str | Path) -> Any:
    """The ``transformers`` tokenizer class ``tokenizer_config.json`` names, loaded from the
    folder (``AutoTokenizer`` would parse ``config.json``, which transformers 5 cannot do for
    remote-code model types such as ``llama_bidirec``)."""
    import transformers

    folder = Path(folder)
    name = json.loads((folder / "tokenizer_config.json").read_text())["tokenizer_class"]
    return getattr(transformers, name.removesuffix("Fast") if name != "PreTrainedTokenizerFast"
                   else name).from_pretrained(str(folder))
