"""mGTE (``NewForSequenceClassification``, model type ``new``; gte-multilingual-reranker-base):
BERT's post-norm layers with rotary positions and a gated MLP.

The difference from BERT: no position table (rotary ``q``/``k``, ``rotate_half`` convention,
``rope_theta`` and NTK ``rope_scaling``: with it the cache new-impl builds covers
``max_position_embeddings * factor`` positions, so the scaled frequencies apply at every
length), one packed ``qkv_proj``, and the MLP ``down(act(gate) * up)`` with
``up, gate = split(up_gate_proj(x))`` (no bias on ``up_gate_proj``). Token type 0 only. The
head is BERT's pooler (dense, tanh) and the classifier.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reranker.errors import ModelLoadError

__all__ = ["mgte_graph", "rotary_table"]


def rotary_table(config: dict[str, Any], length: int) -> tuple[np.ndarray, np.ndarray]:
    """``cos, sin`` ``[length, head_dim]`` in float32, as new-impl's rotary module caches them."""
    f32 = np.float32
    dim = int(config["hidden_size"]) // int(config["num_attention_heads"])
    base = float(config.get("rope_theta", 10000.0))
    max_pos = int(config["max_position_embeddings"])
    exponents = np.arange(0, dim, 2, dtype=f32) / f32(dim)
    inv_freq = f32(1.0) / np.power(f32(base), exponents)
    scaling = config.get("rope_scaling")
    if scaling:
        kind = scaling.get("type") or scaling.get("rope_type")
        if kind != "ntk":
            raise ModelLoadError(f"mGTE rope_scaling type {kind!r} is not supported (ntk is)")
        factor = float(scaling["factor"])
        if max(max_pos * factor, length) > max_pos:
            mixed_b = scaling.get("mixed_b")
            if mixed_b is None:
                inv_freq = (f32(1.0) / np.power(f32(base * factor), exponents)
                            / f32(factor ** (2 / dim)))
            else:
                a = np.log(f32(factor)) / f32((dim / 2) ** mixed_b)
                inv_freq = inv_freq / np.exp(a * np.arange(1, dim // 2 + 1, dtype=f32)
                                             ** f32(mixed_b)).astype(f32)
    angles = np.arange(length, dtype=f32)[:, None] * inv_freq.astype(f32)[None, :]
    emb = np.concatenate([angles, angles], axis=1)
    return np.cos(emb).astype(f32), np.sin(emb).astype(f32)


def mgte_graph(g: Any, ck: Any, config: dict[str, Any], window: int) -> tuple[str, int]:
    """Write the graph into ``g`` from checkpoint ``ck``; returns (logits name, labels)."""
    from onnx import TensorProto

    f32, i64 = np.float32, np.int64
    if config.get("position_embedding_type", "rope") != "rope":
        raise ModelLoadError("mGTE with absolute positions is not supported (rope is)")
    if config.get("logn_attention_scale"):
        raise ModelLoadError("mGTE with logn_attention_scale is not supported")
    if config.get("hidden_act", "gelu") != "gelu":
        raise ModelLoadError(f"mGTE hidden_act {config.get('hidden_act')!r} is not supported")
    if config.get("layer_norm_type", "layer_norm") != "layer_norm":
        raise ModelLoadError("mGTE with rms_norm is not supported")
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    d, eps = hidden // heads, float(config.get("layer_norm_eps", 1e-12))
    inter = int(config["intermediate_size"])
    p = "new"

    def lin(x: str, name: str) -> str:
        bias = ck[f"{name}.bias"] if f"{name}.bias" in ck else None
        return g.linear(x, ck[f"{name}.weight"], bias, name)

    def norm(x: str, name: str) -> str:
        return g.layer_norm(x, ck[f"{name}.weight"], ck[f"{name}.bias"], name, eps)

    x = g.op("Gather", g.weight(f"{p}.embeddings.word_embeddings.weight",
                                ck[f"{p}.embeddings.word_embeddings.weight"]), "input_ids")
    if int(config.get("type_vocab_size", 0)) > 0:
        x = g.op("Add", x, g.weight(f"{p}.embeddings.token_type_embeddings.row0",
                                    _row0(ck[f"{p}.embeddings.token_type_embeddings.weight"])))
    x = norm(x, f"{p}.embeddings.LayerNorm")

    mask = g.op("Unsqueeze", "attention_mask", g.constant("/mask_axes", np.array([1, 2], i64)))
    mask = g.op("Cast", mask, to=TensorProto.FLOAT)
    mask = g.op("Mul", g.op("Sub", g.constant("/mask_one", np.array(1.0, f32)), mask),
                g.constant("/mask_min", np.array(np.finfo(f32).min, f32)))

    cos_table, sin_table = rotary_table(config, max(window, 1))
    seq = g.op("Shape", "input_ids", start=1, end=2)
    zero = g.constant("/zero1", np.array([0], i64))
    cos = g.op("Slice", g.constant("/rope_cos", cos_table), zero, seq)
    sin = g.op("Slice", g.constant("/rope_sin", sin_table), zero, seq)
    half = g.constant("/rope_half", np.array([d // 2], i64))
    end = g.constant("/rope_end", np.array([d], i64))
    last = g.constant("/axis_last", np.array([-1], i64))

    def rotate(t: str) -> str:  # t: [batch, heads, seq, d]
        first = g.op("Slice", t, zero, half, last)
        second = g.op("Slice", t, half, end, last)
        rotated = g.op("Concat", g.op("Neg", second), first, axis=-1)
        return g.op("Add", g.op("Mul", t, cos), g.op("Mul", rotated, sin))

    split = g.constant("/split_heads", np.array([0, 0, heads, d], i64))
    scale = g.constant("/sqrt_head_dim", np.array(np.sqrt(d), f32))
    for i in range(int(config["num_hidden_layers"])):
        layer = f"{p}.encoder.layer.{i}"
        q, k, v = g.ops("Split", [lin(x, f"{layer}.attention.qkv_proj")], 3, axis=-1)
        q, k, v = (g.op("Transpose", g.op("Reshape", t, split), perm=[0, 2, 1, 3])
                   for t in (q, k, v))
        scores = g.op("MatMul", rotate(q), g.op("Transpose", rotate(k), perm=[0, 1, 3, 2]))
        scores = g.op("Add", g.op("Div", scores, scale), mask)
        context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
        context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]),
                       g.constant("/merge_heads", np.array([0, 0, hidden], i64)))
        x = norm(g.op("Add", x, lin(context, f"{layer}.attention.o_proj")), f"{layer}.attn_ln")
        up, gate = g.ops("Split", [lin(x, f"{layer}.mlp.up_gate_proj")], 2, axis=-1)
        if ck[f"{layer}.mlp.up_gate_proj.weight"].shape[0] != 2 * inter:
            raise ModelLoadError(f"{layer}.mlp.up_gate_proj has "
                                 f"{ck[f'{layer}.mlp.up_gate_proj.weight'].shape[0]} rows, "
                                 f"2 x intermediate_size = {2 * inter} expected")
        mlp = lin(g.op("Mul", g.gelu(gate), up), f"{layer}.mlp.down_proj")
        x = norm(g.op("Add", x, mlp), f"{layer}.mlp_ln")
    first = g.op("Gather", x, g.constant("/first_token", np.array(0, i64)), axis=1)
    logits = lin(g.op("Tanh", lin(first, f"{p}.pooler.dense")), "classifier")
    return logits, int(ck["classifier.weight"].shape[0])


def _row0(tensor: Any) -> Any:
    from reranker.graph.writer import DerivedTensor

    return DerivedTensor(tensor, tuple(tensor.shape[1:]), lambda a: a[0])
