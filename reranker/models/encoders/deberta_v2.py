"""``DebertaV2ForSequenceClassification`` (mxbai-rerank-*-v1): BERT's post-norm layers with
disentangled attention instead of absolute positions.

The differences from :mod:`.bert`: no position table unless ``position_biased_input``, no token
types when ``type_vocab_size`` is 0 (DeBERTa-v3); each score is
``(q_i.k_j + q_i.Kr[c(i-j)] + k_j.Qr[p(j-i)]) / sqrt(head_dim * (1 + #pos_att_type))`` where
``Kr``/``Qr`` are the relative embeddings (``rel_embeddings``, LayerNorm-ed when
``norm_rel_ebd`` says so) through the layer's key/query projections (``share_att_key``) or its
``pos_key_proj``/``pos_query_proj``, and ``c``/``p`` map a distance to its clamped log bucket
(``position_buckets``, ``max_relative_positions``). The bucket of every distance the window
allows is computed here, in float32 as transformers' torch code computes it, so the graph only
gathers. The head is the ``ContextPooler`` (dense and ``pooler_hidden_act`` on the first token)
and the classifier. The feed-forward is BERT's (same names).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from reranker.errors import ModelLoadError
from reranker.models.checkpoint import Checkpoint
from reranker.models.encoders.bert import EncoderLayout, feed_forward_block
from reranker.models.family import BuiltGraph, GraphOptions
from reranker.models.layers.activations import activation, check_activation
from reranker.models.layers.attention import padding_mask
from reranker.models.layers.heads import first_token
from reranker.models.layers.linear import linear
from reranker.models.layers.norms import layer_norm
from reranker.models.layers.position_bias import positions, relative_shift
from reranker.models.sizes import config_float, config_int, layer_count
from reranker.models.writer import DerivedTensor, GraphWriter, f32, i64, transposed

__all__ = ["bucket_table", "graph"]

_ACTS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")
MAX_WINDOW = 1 << 17


def bucket_table(window: int, buckets: int, max_position: int) -> np.ndarray:
    """transformers' ``make_log_bucket_position`` of every distance in ``[-(window-1),
    window-1]`` (index ``distance + window - 1``), in float32 as torch computes it."""
    rel = np.arange(-(window - 1), window, dtype=np.int64)
    if buckets <= 0 or max_position <= 0:
        return rel
    mid = buckets // 2
    abs_pos = np.where((rel < mid) & (rel > -mid), mid - 1, np.abs(rel)).astype(np.float32)
    ratio = np.log(abs_pos / np.float32(mid)) / np.log(np.float32((max_position - 1) / mid))
    log_pos = np.ceil(ratio * np.float32(mid - 1)) + np.float32(mid)
    signed = log_pos * np.sign(rel).astype(np.float32)
    return np.where(abs_pos <= mid, rel.astype(np.float32), signed).astype(np.int64)


def _att_types(config: Any, source: str) -> set[str]:
    raw = config.get("pos_att_type") or []
    parts = raw.lower().split("|") if isinstance(raw, str) else raw
    types = {str(x).strip() for x in parts if str(x).strip()}
    if not types <= {"c2p", "p2c"}:
        raise ModelLoadError(f"pos_att_type={raw!r} in {source}: supported c2p, p2c")
    return types


def window_limit(config: Mapping[str, Any], src: str) -> int:
    return config_int(config, "max_position_embeddings", src, maximum=MAX_WINDOW)


def graph(checkpoint: Checkpoint, options: GraphOptions) -> BuiltGraph:
    """The graph of a DeBERTa-v2 reranker."""
    ck, config, src = checkpoint, checkpoint.config, checkpoint.source
    for key in ("conv_kernel_size", "z_steps"):
        if config.get(key):
            raise ModelLoadError(f"{key}={config[key]!r} in {src} is not supported")
    if not config.get("relative_attention", False):
        raise ModelLoadError(f"{src}: DeBERTa-v2 without relative_attention is not supported")
    hidden = config_int(config, "hidden_size", src)
    heads = config_int(config, "num_attention_heads", src)
    width = ck["deberta.embeddings.word_embeddings.weight"].shape[-1]
    if hidden % heads or config.get("embedding_size", hidden) != hidden or width != hidden:
        raise ModelLoadError(f"{src}: hidden_size {hidden} must split into {heads} heads and "
                             f"equal embedding_size and the embeddings' width ({width})")
    lay = EncoderLayout("deberta", layer_count(ck, "deberta.encoder.layer."), heads, hidden,
                        config_float(config, "layer_norm_eps", src, default=1e-7, minimum=0.0,
                                     maximum=1.0),
                        check_activation(config.get("hidden_act", "gelu"), "hidden_act", src,
                                         _ACTS), 0,
                        config_int(config, "type_vocab_size", src, default=0, minimum=0) > 0,
                        config_int(config, "intermediate_size", src),
                        config_int(config, "vocab_size", src), window_limit(config, src), hidden)
    att = _att_types(config, src)
    # The bucket tables hold 2 x window entries: a window no tokenizer reaches is refused.
    window = lay.max_position_embeddings
    max_rel = config_int(config, "max_relative_positions", src, default=-1, minimum=-1)
    max_rel = window if max_rel < 1 else max_rel
    buckets = config_int(config, "position_buckets", src, default=-1, minimum=-1)
    span = buckets if buckets > 0 else max_rel

    g = GraphWriter()
    mask = padding_mask(g)
    p = "deberta.embeddings"
    x = g.op("Gather", g.weight(f"{p}.word_embeddings.weight", ck[f"{p}.word_embeddings.weight"]),
             "input_ids")
    if config.get("position_biased_input", True):
        table = g.weight(f"{p}.position_embeddings.weight", ck[f"{p}.position_embeddings.weight"])
        x = g.op("Add", x, g.op("Gather", table, positions(g)))
    if lay.uses_token_types:
        table = g.weight(f"{p}.token_type_embeddings.weight",
                         ck[f"{p}.token_type_embeddings.weight"])
        x = g.op("Add", x, g.op("Gather", table, "token_type_ids"))
    x = layer_norm(g, ck, x, f"{p}.LayerNorm", lay.layer_norm_eps)

    # Per distance r = i - j (c2p) or j - i (p2c), the bucket row of the relative table, for
    # the 2n distances of this length in descending order (n - 1 down to -n; the last is
    # padding); each layer gathers those rows and shifts the [n, 2n] products back to keys.
    # The tables run from r = window - 1 down, so the rows are an ascending, non-negative
    # range (ONNX Runtime rewrites a Gather of a Range into a Slice, which reads a negative
    # end of a descending range as counted from the back).
    bucketed = bucket_table(window, buckets, max_rel)[::-1]
    bucketed = np.append(bucketed, bucketed[-1])  # distance -window: padding
    n = g.op("Shape", "input_ids", start=1, end=2)
    lo = g.op("Sub", g.constant("/rel_window", i64(window)), n)
    hi = g.op("Add", g.constant("/rel_window", i64(window)), n)
    steps = g.op("Range", g.op("Squeeze", lo), g.op("Squeeze", hi),
                 g.constant("/one", np.array(1, np.int64)))
    rows = {kind: g.op("Gather", g.constant(f"/{kind}_table", np.clip(
        values, 0, 2 * span - 1)), steps)
        for kind, values in (("c2p", bucketed + span), ("p2c", span - bucketed)) if kind in att}
    rel = ck["deberta.encoder.rel_embeddings.weight"]
    if rel.shape[0] < 2 * span:
        raise ModelLoadError(f"{src}: rel_embeddings has {rel.shape[0]} rows, the config "
                             f"needs {2 * span}")
    rel_emb = g.weight("deberta.encoder.rel_embeddings.rows", DerivedTensor(
        rel, (2 * span, rel.shape[1]), lambda a: a[: 2 * span]))
    if "layer_norm" in str(config.get("norm_rel_ebd", "none")).lower().split("|"):
        rel_emb = layer_norm(g, ck, rel_emb, "deberta.encoder.LayerNorm", lay.layer_norm_eps)
    split = g.constant("/split_heads", i64(0, 0, heads, lay.head_dim))
    rel_split = g.constant("/rel_split", i64(-1, heads, lay.head_dim))
    scale = g.constant("/disentangled_scale", f32(1.0 / np.sqrt(lay.head_dim * (1 + len(att)))))
    for i in range(lay.num_layers):
        layer = f"deberta.encoder.layer.{i}"
        a = f"{layer}.attention.self"
        projections = {}
        for part in ("query_proj", "key_proj", "value_proj", "pos_key_proj", "pos_query_proj"):
            if f"{a}.{part}.weight" in ck:
                projections[part] = (g.weight(f"{a}.{part}.weight_t",
                                              transposed(ck[f"{a}.{part}.weight"])),
                                     g.weight(f"{a}.{part}.bias", ck[f"{a}.{part}.bias"]))

        def project(v: str, part: str, weights: dict[str, tuple[str, str]] = projections,
                    a: str = a) -> str:
            if part not in weights:
                raise ModelLoadError(f"checkpoint {src} has no weight '{a}.{part}.weight'")
            return g.op("Add", g.op("MatMul", v, weights[part][0]), weights[part][1])

        q, k, v = (g.op("Transpose", g.op("Reshape", project(x, part), split), perm=[0, 2, 1, 3])
                   for part in ("query_proj", "key_proj", "value_proj"))
        scores = g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2]))
        for kind, content, part in (("c2p", q, "key_proj"), ("p2c", k, "query_proj")):
            if kind not in att:
                continue
            pos = project(rel_emb, part if config.get("share_att_key") else f"pos_{part}")
            pos = g.op("Gather", pos, rows[kind])  # [2n, heads * d], one row per distance
            pos = g.op("Transpose", g.op("Reshape", pos, rel_split), perm=[1, 2, 0])
            term = relative_shift(g, g.op("MatMul", content, pos), n)
            scores = g.op("Add", scores, term if kind == "c2p" else g.op(
                "Transpose", term, perm=[0, 1, 3, 2]))
        scores = g.op("Add", g.op("Mul", scores, scale), mask)
        context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
        context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]),
                       g.constant("/merge_heads", i64(0, 0, hidden)))
        out = g.op("Add", linear(g, ck, context, f"{layer}.attention.output.dense"), x)
        x = layer_norm(g, ck, out, f"{layer}.attention.output.LayerNorm", lay.layer_norm_eps)
        x = feed_forward_block(g, ck, x, layer, lay)
    dims = ["batch_size", "sequence_length"]
    out_dims: list[Any]
    if options.head:
        act = check_activation(config.get("pooler_hidden_act", "gelu"), "pooler_hidden_act",
                               src, (*_ACTS, "tanh"))
        pooled = linear(g, ck, first_token(g, x), "pooler.dense")
        pooled = g.op("Tanh", pooled) if act == "tanh" else activation(g, pooled, act)
        logits = linear(g, ck, pooled, "classifier")
        out_dims = ["batch_size", int(ck["classifier.weight"].shape[0])]
    else:
        logits, out_dims = x, [*dims, hidden]
    g.output(logits, "logits")
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if lay.uses_token_types else [])
    return g, [(n, 7, dims) for n in names], [("logits", 1, out_dims)]
