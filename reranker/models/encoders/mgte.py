"""``NewForSequenceClassification`` (model type ``new``; gte-multilingual-reranker-base, custom
code from ``Alibaba-NLP/new-impl``): BERT's post-norm layers with rotary positions, a packed
q/k/v projection and a gated feed-forward.

The differences from :mod:`.bert`: no position table (token type 0 only); per layer
``qkv_proj`` is split into q, k, v, q and k are rotated (``rotate_half``; ``rope_theta`` and NTK
``rope_scaling``, see :func:`rotary_table`), ``o_proj`` and ``attn_ln`` close the attention;
the feed-forward is ``mlp_ln(x + down_proj(act(gate) * up))`` with
``up, gate = split(up_gate_proj(x))`` (no bias, the activation on the second half). The head
is BERT's pooler (``new.pooler.dense``, tanh) and the classifier.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from reranker.errors import ModelLoadError
from reranker.models.checkpoint import Checkpoint
from reranker.models.encoders.bert import EncoderLayout, embeddings, encoder_layout
from reranker.models.family import BuiltGraph, GraphOptions
from reranker.models.layers.activations import activation
from reranker.models.layers.attention import attend, padding_mask
from reranker.models.layers.heads import first_token, pooler_classifier
from reranker.models.layers.linear import linear
from reranker.models.layers.norms import layer_norm
from reranker.models.layers.rope import rotate_half
from reranker.models.sizes import config_float, config_int, config_mapping
from reranker.models.writer import GraphWriter, i64

__all__ = ["MAX_WINDOW", "graph", "rotary_table"]

MAX_WINDOW = 1 << 17


def rotary_table(config: Mapping[str, Any], rows: int, source: str = "the checkpoint"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin ``[rows, head_dim]`` (float32) as new-impl caches them.

    With ``rope_scaling: {"type": "ntk", "factor": f}`` the cache is built for
    ``max_position_embeddings * f`` positions, which rebuilds it with scaled frequencies
    (``base * f``, then ``/ f^(2 / dim)``; or the ``mixed_b`` form), used at every length.
    Angles are float32 products, as torch computes them.
    """
    f32 = np.float32
    dim = config_int(config, "hidden_size", source) // config_int(
        config, "num_attention_heads", source)
    base = config_float(config, "rope_theta", source, default=10000.0, minimum=1.0,
                        maximum=1e12)
    # The rotary tables are constants of rows x head_dim: bounded like the window.
    max_pos = config_int(config, "max_position_embeddings", source, maximum=MAX_WINDOW)
    exponents = np.arange(0, dim, 2, dtype=f32) / f32(dim)
    inv_freq = f32(1.0) / np.power(f32(base), exponents)
    scaling = config_mapping(config, "rope_scaling", source)
    if scaling:
        kind = scaling.get("type") or scaling.get("rope_type")
        factor = scaling.get("factor")
        if kind != "ntk" or not isinstance(factor, (int, float)) or factor <= 0:
            raise ModelLoadError(f"rope_scaling={dict(scaling)!r} in {source}: supported "
                                 "{'type': 'ntk', 'factor': > 0, 'mixed_b': optional}")
        if max(max_pos * factor, rows) > max_pos:
            mixed_b = scaling.get("mixed_b")
            if mixed_b is None:
                inv_freq = (f32(1.0) / np.power(f32(base * factor), exponents)
                            / f32(factor ** (2 / dim)))
            else:
                a = np.log(f32(factor)) / f32((dim / 2) ** float(mixed_b))
                steps = np.arange(1, dim // 2 + 1, dtype=f32) ** f32(mixed_b)
                inv_freq = inv_freq / np.exp(a * steps).astype(f32)
    angles = np.arange(rows, dtype=f32)[:, None] * inv_freq.astype(f32)[None, :]
    emb = np.concatenate([angles, angles], axis=1)
    return np.cos(emb).astype(f32), np.sin(emb).astype(f32)


def _attention(g: GraphWriter, ck: Checkpoint, x: str, mask: str, rope: tuple[str, str],
               layer: str, lay: EncoderLayout) -> str:
    split = g.constant("/split_heads", i64(0, 0, lay.num_heads, lay.head_dim))
    qkv = linear(g, ck, x, f"{layer}.attention.qkv_proj")
    thirds = g.constant("/qkv_thirds", i64(lay.hidden_size, lay.hidden_size, lay.hidden_size))
    q, k, v = (g.op("Transpose", g.op("Reshape", t, split), perm=[0, 2, 1, 3])
               for t in g.ops("Split", [qkv, thirds], 3, axis=-1))
    q = rotate_half(g, q, *rope, lay.head_dim)
    k_t = g.op("Transpose", rotate_half(g, k, *rope, lay.head_dim), perm=[0, 1, 3, 2])
    context = attend(g, q, k_t, v, mask, float(np.sqrt(lay.head_dim)), divide=True, tag=layer)
    context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]),
                   g.constant("/merge_heads", i64(0, 0, lay.hidden_size)))
    out = g.op("Add", x, linear(g, ck, context, f"{layer}.attention.o_proj"))
    return layer_norm(g, ck, out, f"{layer}.attn_ln", lay.layer_norm_eps)


def _feed_forward(g: GraphWriter, ck: Checkpoint, x: str, layer: str, lay: EncoderLayout,
                  inter: int) -> str:
    rows = ck[f"{layer}.mlp.up_gate_proj.weight"].shape[0]
    if rows != 2 * inter:
        raise ModelLoadError(f"{ck.source}: {layer}.mlp.up_gate_proj has {rows} rows; "
                             f"2 x intermediate_size = {2 * inter} expected")
    both = linear(g, ck, x, f"{layer}.mlp.up_gate_proj", "none")
    up, gate = g.ops("Split", [both, g.constant(f"/glu_halves{inter}", i64(inter, inter))], 2,
                     axis=-1)
    h = linear(g, ck, g.op("Mul", activation(g, gate, lay.hidden_act), up),
               f"{layer}.mlp.down_proj")
    return layer_norm(g, ck, g.op("Add", x, h), f"{layer}.mlp_ln", lay.layer_norm_eps)


def graph(checkpoint: Checkpoint, options: GraphOptions) -> BuiltGraph:
    """The graph of an mGTE reranker."""
    config, source = checkpoint.config, checkpoint.source
    for key, allowed in (("layer_norm_type", "layer_norm"), ("logn_attention_scale", False)):
        if config.get(key, allowed) != allowed:
            raise ModelLoadError(f"{key}={config.get(key)!r} in {source}: only {allowed!r} "
                                 "is supported")
    lay = encoder_layout(checkpoint, "new", default_pad=1, position_type="rope")
    width = checkpoint["new.embeddings.word_embeddings.weight"].shape[-1]
    if width != lay.hidden_size:  # before the rotary tables are sized from the config
        raise ModelLoadError(f"{source}: hidden_size={lay.hidden_size} but the embeddings are "
                             f"{width} wide")
    inter = config_int(config, "intermediate_size", source)
    g = GraphWriter()
    mask = padding_mask(g)
    x = embeddings(g, checkpoint, lay, None)
    cos_table, sin_table = rotary_table(config, config_int(
        config, "max_position_embeddings", source, maximum=MAX_WINDOW), source)
    zero, length = g.constant("/rope_start", i64(0)), g.op("Shape", "input_ids", start=1, end=2)
    rope = (g.op("Slice", g.constant("/rope_cos", cos_table), zero, length),
            g.op("Slice", g.constant("/rope_sin", sin_table), zero, length))
    for i in range(lay.num_layers):
        layer = f"new.encoder.layer.{i}"
        x = _attention(g, checkpoint, x, mask, rope, layer, lay)
        x = _feed_forward(g, checkpoint, x, layer, lay, inter)
    dims = ["batch_size", "sequence_length"]
    if options.head:
        logits = pooler_classifier(g, checkpoint, first_token(g, x), "new.pooler.dense")
        out_dims: list[Any] = ["batch_size", int(checkpoint["classifier.weight"].shape[0])]
    else:
        logits, out_dims = x, [*dims, lay.hidden_size]
    g.output(logits, "logits")
    return g, [(n, 7, dims) for n in ("input_ids", "attention_mask")], [("logits", 1, out_dims)]
