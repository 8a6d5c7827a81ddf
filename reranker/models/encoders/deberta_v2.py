"""DeBERTa-v2 (``DebertaV2ForSequenceClassification``; mxbai-rerank v1): BERT's post-norm
layers with disentangled attention instead of absolute positions.

The difference from BERT: no position table (unless ``position_biased_input``) and no token
types (DeBERTa-v3: ``type_vocab_size: 0``); each attention score adds content-to-position
``q_i . Kr[c(i - j)]`` and position-to-content ``k_j . Qr[p(j - i)]`` to ``q_i . k_j``, all
scaled by ``1 / sqrt(head_dim * 3)``. ``Kr``/``Qr`` are the relative embeddings (LayerNorm-ed
by ``norm_rel_ebd``) projected by the layer's key/query projections (``share_att_key``) or
their own; ``c``/``p`` map a distance to its clamped log bucket (``position_buckets``). The
bucket tables are built here once per distance, so the graph gathers, per pair, from a table
of ``2 * window - 1`` entries. The head is the ``ContextPooler`` (dense and GELU on the first
token) and the classifier.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reranker.errors import ModelLoadError

__all__ = ["bucket_table", "deberta_v2_graph"]


def _att_types(config: dict[str, Any]) -> list[str]:
    raw = config.get("pos_att_type") or []
    if isinstance(raw, str):
        raw = raw.lower().split("|")
    return [str(x).strip() for x in raw if str(x).strip()]


def bucket_table(window: int, buckets: int, max_position: int) -> np.ndarray:
    """Bucketed relative position of every distance ``r`` in ``[-(window-1), window-1]``
    (index ``r + window - 1``), computed in float32 as transformers' torch code does."""
    rel = np.arange(-(window - 1), window, dtype=np.int64)
    if buckets <= 0 or max_position <= 0:
        return rel
    mid = buckets // 2
    f32 = np.float32
    abs_pos = np.where((rel < mid) & (rel > -mid), mid - 1, np.abs(rel))
    ratio = np.log(abs_pos.astype(f32) / f32(mid)) / np.log(f32((max_position - 1) / mid))
    log_pos = np.ceil(ratio * f32(mid - 1)) + f32(mid)
    return np.where(abs_pos <= mid, rel.astype(f32),
                    log_pos * np.sign(rel).astype(f32)).astype(np.int64)


def deberta_v2_graph(g: Any, ck: Any, config: dict[str, Any], window: int) -> tuple[str, int]:
    """Write the graph into ``g`` from checkpoint ``ck``; returns (logits name, labels)."""
    from onnx import TensorProto

    f32, i64 = np.float32, np.int64
    if int(config.get("conv_kernel_size", 0) or 0) > 0:
        raise ModelLoadError("DeBERTa-v2 with a convolution layer (conv_kernel_size) is not "
                             "supported")
    if "embedding_size" in config and int(config["embedding_size"]) != int(config["hidden_size"]):
        raise ModelLoadError("DeBERTa-v2 with an embedding projection is not supported")
    if not config.get("relative_attention", False):
        raise ModelLoadError("DeBERTa-v2 without relative_attention is not supported")
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    d, eps = hidden // heads, float(config.get("layer_norm_eps", 1e-7))
    att = _att_types(config)
    share = bool(config.get("share_att_key", False))
    max_rel = int(config.get("max_relative_positions", -1))
    max_rel = int(config["max_position_embeddings"]) if max_rel < 1 else max_rel
    buckets = int(config.get("position_buckets", -1))
    span = buckets if buckets > 0 else max_rel
    p = "deberta"

    def lin(x: str, name: str, weight_name: str | None = None) -> str:
        return g.linear(x, ck[f"{name}.weight"], ck[f"{name}.bias"], weight_name or name)

    # Embeddings.
    x = g.op("Gather", g.weight(f"{p}.embeddings.word_embeddings.weight",
                                ck[f"{p}.embeddings.word_embeddings.weight"]), "input_ids")
    seq = g.op("Squeeze", g.op("Shape", "input_ids", start=1, end=2))
    zero, one = g.constant("/zero", np.array(0, i64)), g.constant("/one", np.array(1, i64))
    positions = g.op("Range", zero, seq, one)
    if config.get("position_biased_input", True):
        table = g.weight(f"{p}.embeddings.position_embeddings.weight",
                         ck[f"{p}.embeddings.position_embeddings.weight"])
        x = g.op("Add", x, g.op("Gather", table, positions))
    uses_types = int(config.get("type_vocab_size", 0)) > 0
    if uses_types:
        table = g.weight(f"{p}.embeddings.token_type_embeddings.weight",
                         ck[f"{p}.embeddings.token_type_embeddings.weight"])
        x = g.op("Add", x, g.op("Gather", table, "token_type_ids"))
    x = g.layer_norm(x, ck[f"{p}.embeddings.LayerNorm.weight"],
                     ck[f"{p}.embeddings.LayerNorm.bias"], f"{p}.embeddings.LayerNorm", eps)

    # Padding mask on keys, as BERT's.
    mask = g.op("Unsqueeze", "attention_mask", g.constant("/mask_axes", np.array([1, 2], i64)))
    mask = g.op("Cast", mask, to=TensorProto.FLOAT)
    mask = g.op("Mul", g.op("Sub", g.constant("/mask_one", np.array(1.0, f32)), mask),
                g.constant("/mask_min", np.array(np.finfo(f32).min, f32)))

    # Relative positions: rel[i, j] = i - j, then per-distance tables of bucket indices.
    limit = max(window, int(config["max_position_embeddings"]))
    table = bucket_table(limit, buckets, max_rel)
    c2p_table = np.clip(table + span, 0, 2 * span - 1)
    p2c_table = np.clip(span - table, 0, 2 * span - 1)
    rel = g.op("Add", g.op("Sub", g.op("Unsqueeze", positions, g.constant("/ax1", np.array([1],
                                                                                    i64))),
                            g.op("Unsqueeze", positions, g.constant("/ax0", np.array([0], i64)))),
               g.constant("/rel_offset", np.array(limit - 1, i64)))
    shape4 = g.op("Concat", g.op("Shape", "input_ids", start=0, end=1),
                  g.constant("/heads", np.array([heads], i64)),
                  g.op("Shape", "input_ids", start=1, end=2),
                  g.op("Shape", "input_ids", start=1, end=2), axis=0)

    def index(name: str, values: np.ndarray) -> str:
        return g.op("Expand", g.op("Gather", g.constant(name, values.astype(i64)), rel), shape4)

    c2p_index = index("/c2p_table", c2p_table) if "c2p" in att else None
    p2c_index = index("/p2c_table", p2c_table) if "p2c" in att else None
    rel_emb = g.weight(f"{p}.encoder.rel_embeddings.weight",
                       _rows(ck[f"{p}.encoder.rel_embeddings.weight"], 2 * span))
    if "layer_norm" in [s.strip() for s in str(config.get("norm_rel_ebd", "none")).split("|")]:
        rel_emb = g.layer_norm(rel_emb, ck[f"{p}.encoder.LayerNorm.weight"],
                               ck[f"{p}.encoder.LayerNorm.bias"], f"{p}.encoder.LayerNorm", eps)
    split = g.constant("/split_heads", np.array([0, 0, heads, d], i64))
    rel_heads = g.constant("/rel_heads", np.array([2 * span, heads, d], i64))
    scale = g.constant("/scale", np.array(1.0 / np.sqrt(d * (1 + len(
        [a for a in att if a in ("c2p", "p2c")]))), f32))

    def heads_of(v: str, perm: list[int]) -> str:
        return g.op("Transpose", g.op("Reshape", v, split), perm=perm)

    for i in range(int(config["num_hidden_layers"])):
        a = f"{p}.encoder.layer.{i}.attention"
        names: dict[str, tuple[str, str]] = {}
        for part in ("query_proj", "key_proj", "value_proj", "pos_key_proj", "pos_query_proj"):
            if f"{a}.self.{part}.weight" in ck:
                names[part] = (g.weight(f"{a}.self.{part}.weight_t",
                                        _transposed(ck[f"{a}.self.{part}.weight"])),
                               g.weight(f"{a}.self.{part}.bias", ck[f"{a}.self.{part}.bias"]))

        def project(v: str, part: str, names: dict[str, tuple[str, str]] = names) -> str:
            w, b = names[part]
            return g.op("Add", g.op("MatMul", v, w), b)

        q = heads_of(project(x, "query_proj"), [0, 2, 1, 3])
        k = heads_of(project(x, "key_proj"), [0, 2, 1, 3])
        v = heads_of(project(x, "value_proj"), [0, 2, 1, 3])
        scores = g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2]))
        if c2p_index is not None:
            pos_k = project(rel_emb, "key_proj" if share else "pos_key_proj")
            pos_k = g.op("Transpose", g.op("Reshape", pos_k, rel_heads), perm=[1, 2, 0])
            c2p = g.op("GatherElements", g.op("MatMul", q, pos_k), c2p_index, axis=3)
            scores = g.op("Add", scores, c2p)
        if p2c_index is not None:
            pos_q = project(rel_emb, "query_proj" if share else "pos_query_proj")
            pos_q = g.op("Transpose", g.op("Reshape", pos_q, rel_heads), perm=[1, 2, 0])
            p2c = g.op("GatherElements", g.op("MatMul", k, pos_q), p2c_index, axis=3)
            scores = g.op("Add", scores, g.op("Transpose", p2c, perm=[0, 1, 3, 2]))
        scores = g.op("Add", g.op("Mul", scores, scale), mask)
        context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
        context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]),
                       g.constant("/merge_heads", np.array([0, 0, hidden], i64)))
        x = g.layer_norm(g.op("Add", lin(context, f"{a}.output.dense"), x),
                         ck[f"{a}.output.LayerNorm.weight"], ck[f"{a}.output.LayerNorm.bias"],
                         f"{a}.output.LayerNorm", eps)
        layer = f"{p}.encoder.layer.{i}"
        h = _activation(g, lin(x, f"{layer}.intermediate.dense"), str(config.get("hidden_act",
                                                                                  "gelu")))
        x = g.layer_norm(g.op("Add", lin(h, f"{layer}.output.dense"), x),
                         ck[f"{layer}.output.LayerNorm.weight"],
                         ck[f"{layer}.output.LayerNorm.bias"], f"{layer}.output.LayerNorm", eps)
    first = g.op("Gather", x, g.constant("/first_token", np.array(0, i64)), axis=1)
    pooled = _activation(g, lin(first, "pooler.dense"), str(config.get("pooler_hidden_act",
                                                                        "gelu")))
    logits = lin(pooled, "classifier")
    return logits, int(ck["classifier.weight"].shape[0])


def _activation(g: Any, x: str, kind: str) -> str:
    if kind == "gelu":
        return g.gelu(x)
    if kind in ("gelu_new", "gelu_pytorch_tanh"):
        return g.gelu(x, approximate=True)
    if kind == "tanh":
        return g.op("Tanh", x)
    if kind == "relu":
        return g.op("Relu", x)
    raise ModelLoadError(f"DeBERTa-v2 activation {kind!r} is not supported")


def _transposed(tensor: Any) -> Any:
    from reranker.graph.writer import transposed

    return transposed(tensor)


def _rows(tensor: Any, count: int) -> Any:
    from reranker.graph.writer import DerivedTensor

    if tensor.shape[0] < count:
        raise ModelLoadError(f"rel_embeddings has {tensor.shape[0]} rows, the config needs "
                             f"{count}")
    return DerivedTensor(tensor, (count, *tensor.shape[1:]), lambda a: a[:count])
