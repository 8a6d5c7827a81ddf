"""JinaBERT (``JinaBertForSequenceClassification``; jina-reranker-v1-turbo-en / -tiny-en):
BERT with ALiBi instead of a position table and a gated MLP with its own post-norm.

The difference from BERT: every attention score gets ``-slope_h * |i - j|`` (the ALiBi slopes,
with the paper's rule for a head count that is not a power of two), and the feed-forward is
``LN(x + wo(act(g[..., :I]) * g[..., I:]))`` with ``g = gated_layers(x)`` (no bias;
``feed_forward_type`` ``geglu`` or ``reglu``) in place of BERT's intermediate/output pair.
Embeddings, self-attention output, pooler and classifier are BERT's, under ``bert.``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from reranker.errors import ModelLoadError

__all__ = ["alibi_slopes", "jinabert_graph"]


def alibi_slopes(heads: int) -> list[float]:
    """ALiBi slopes for ``heads`` heads (Press et al., as jina-bert-implementation has them)."""

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
        return [start ** (i + 1) for i in range(n)]

    if math.log2(heads).is_integer():
        return power_of_two(heads)
    closest = 2 ** math.floor(math.log2(heads))
    return power_of_two(closest) + alibi_slopes(2 * closest)[0::2][: heads - closest]


def jinabert_graph(g: Any, ck: Any, config: dict[str, Any], window: int) -> tuple[str, int]:
    """Write the graph into ``g`` from checkpoint ``ck``; returns (logits name, labels)."""
    from onnx import TensorProto

    f32, i64 = np.float32, np.int64
    if config.get("position_embedding_type") != "alibi":
        raise ModelLoadError("JinaBERT without ALiBi positions is not supported")
    kind = str(config.get("feed_forward_type", "original"))
    if kind not in ("geglu", "reglu"):
        raise ModelLoadError(f"JinaBERT feed_forward_type {kind!r} is not supported "
                             "(geglu, reglu are)")
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    d, eps = hidden // heads, float(config.get("layer_norm_eps", 1e-12))
    inter = int(config["intermediate_size"])
    p = "bert"

    def lin(x: str, name: str) -> str:
        bias = ck[f"{name}.bias"] if f"{name}.bias" in ck else None
        return g.linear(x, ck[f"{name}.weight"], bias, name)

    def norm(x: str, name: str) -> str:
        return g.layer_norm(x, ck[f"{name}.weight"], ck[f"{name}.bias"], name, eps)

    x = g.op("Gather", g.weight(f"{p}.embeddings.word_embeddings.weight",
                                ck[f"{p}.embeddings.word_embeddings.weight"]), "input_ids")
    types = g.weight(f"{p}.embeddings.token_type_embeddings.weight",
                     ck[f"{p}.embeddings.token_type_embeddings.weight"])
    x = norm(g.op("Add", x, g.op("Gather", types, "token_type_ids")), f"{p}.embeddings.LayerNorm")

    # One bias for every layer: padding mask on keys plus -slope_h * |i - j|.
    mask = g.op("Unsqueeze", "attention_mask", g.constant("/mask_axes", np.array([1, 2], i64)))
    mask = g.op("Cast", mask, to=TensorProto.FLOAT)
    mask = g.op("Mul", g.op("Sub", g.constant("/mask_one", np.array(1.0, f32)), mask),
                g.constant("/mask_min", np.array(np.finfo(f32).min, f32)))
    seq = g.op("Squeeze", g.op("Shape", "input_ids", start=1, end=2))
    positions = g.op("Range", g.constant("/zero", np.array(0, i64)), seq,
                     g.constant("/one", np.array(1, i64)))
    distance = g.op("Abs", g.op("Sub", g.op("Unsqueeze", positions, g.constant(
        "/ax0", np.array([0], i64))), g.op("Unsqueeze", positions, g.constant(
            "/ax1", np.array([1], i64)))))
    slopes = -np.asarray(alibi_slopes(heads), dtype=f32).reshape(heads, 1, 1)
    alibi = g.op("Mul", g.op("Cast", distance, to=TensorProto.FLOAT),
                 g.constant("/alibi_slopes", slopes))
    bias = g.op("Add", mask, alibi)  # [batch, heads, seq, seq]

    split = g.constant("/split_heads", np.array([0, 0, heads, d], i64))
    scale = g.constant("/sqrt_head_dim", np.array(np.sqrt(d), f32))
    zero, cut = g.constant("/glu_zero", np.array([0], i64)), g.constant("/glu_cut",
                                                                         np.array([inter], i64))
    end = g.constant("/glu_end", np.array([2 * inter], i64))
    last = g.constant("/axis_last", np.array([-1], i64))
    for i in range(int(config["num_hidden_layers"])):
        layer = f"{p}.encoder.layer.{i}"
        a = f"{layer}.attention"
        q, k, v = (g.op("Transpose", g.op("Reshape", lin(x, f"{a}.self.{part}"), split),
                        perm=[0, 2, 1, 3]) for part in ("query", "key", "value"))
        scores = g.op("Div", g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2])), scale)
        context = g.op("MatMul", g.op("Softmax", g.op("Add", scores, bias), axis=-1), v)
        context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]),
                       g.constant("/merge_heads", np.array([0, 0, hidden], i64)))
        x = norm(g.op("Add", lin(context, f"{a}.output.dense"), x), f"{a}.output.LayerNorm")
        gated_w = ck[f"{layer}.mlp.gated_layers.weight"]
        if gated_w.shape[0] != 2 * inter:
            raise ModelLoadError(f"{layer}.mlp.gated_layers has {gated_w.shape[0]} rows, "
                                 f"2 x intermediate_size = {2 * inter} expected")
        gated = lin(x, f"{layer}.mlp.gated_layers")
        first = g.op("Slice", gated, zero, cut, last)
        act = g.gelu(first) if kind == "geglu" else g.op("Relu", first)
        mlp = lin(g.op("Mul", act, g.op("Slice", gated, cut, end, last)), f"{layer}.mlp.wo")
        x = norm(g.op("Add", mlp, x), f"{layer}.mlp.layernorm")
    first_token = g.op("Gather", x, g.constant("/first_token", np.array(0, i64)), axis=1)
    logits = lin(g.op("Tanh", lin(first_token, f"{p}.pooler.dense")), "classifier")
    return logits, int(ck["classifier.weight"].shape[0])
