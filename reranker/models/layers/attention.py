"""Attention: additive masks, scaled dot-product, and the decoders' grouped-query attention.

Masks are additive float32 tensors: 0 where a key is visible, ``float32.min`` where not
(``masked_fill``, never a sum of two minima, which would overflow to ``-inf``).

- :func:`padding_mask` ``[b, 1, 1, s]``: keys that are padding are hidden (encoders,
  bidirectional decoders).
- :func:`window_mask`: a padding mask further limited to keys within a window (ModernBERT's
  local layers, ``|i - j| <= window``; ``causal=True``: ``0 <= i - j < window``, Mistral-style).
- :func:`decoder_mask` ``[b, 1, 1, s, s]`` for :func:`grouped_query_attention`: causal or
  bidirectional, over left-padded rows.

:func:`attend` is softmax attention over prepared heads; ``bias`` is the hook for an additive
position bias (ALiBi slopes times distances, T5-style relative buckets), added to the scaled
scores before the mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reranker.models.checkpoint import Checkpoint
from reranker.models.layers.linear import Bias, linear
from reranker.models.layers.norms import rms_norm
from reranker.models.layers.rope import rotate_half
from reranker.models.writer import GraphWriter, f32, i64

__all__ = [
    "GroupedQueryShape",
    "attend",
    "decoder_mask",
    "grouped_query_attention",
    "padding_mask",
    "window_mask",
]

_FLOAT, _BOOL = 1, 9  # onnx.TensorProto.FLOAT / BOOL


def _minimum(g: GraphWriter) -> str:
    return g.constant("/mask_min", f32(float(np.finfo(np.float32).min)))


def padding_mask(g: GraphWriter) -> str:
    """``(1 - attention_mask[:, None, None, :]) * float32.min``.

    The node order of a torch export (unsqueeze, cast, ``(1 - m) * min``) is what ONNX
    Runtime's attention fusion matches, so built graphs fuse as Hub exports do.
    """
    mask = g.op("Unsqueeze", "attention_mask", g.constant("/mask_axis1", i64(1)))
    mask = g.op("Unsqueeze", mask, g.constant("/mask_axis2", i64(2)))
    mask = g.op("Cast", mask, to=_FLOAT)
    one = g.constant("/mask_one", f32(1.0))
    return g.op("Mul", g.op("Sub", one, mask), _minimum(g))


def window_mask(g: GraphWriter, padding: str, positions: str, window: int, *,
                causal: bool = False) -> str:
    """``padding`` with keys outside the window hidden too; ``positions`` int64 ``[s]``."""
    rows = g.op("Unsqueeze", positions, g.constant("/ax1", i64(1)))
    cols = g.op("Unsqueeze", positions, g.constant("/ax0", i64(0)))
    limit = g.constant(f"/window{window}", np.array(window, np.int64))
    distance = g.op("Sub", rows, cols)
    if causal:
        outside = g.op("Or", g.op("Less", distance, g.constant("/zero_distance",
                                                               np.array(0, np.int64))),
                       g.op("GreaterOrEqual", distance, limit))
    else:
        outside = g.op("Greater", g.op("Abs", distance), limit)
    return g.op("Where", outside, _minimum(g), padding)


def decoder_mask(g: GraphWriter, *, causal: bool = True, window: int | None = None) -> str:
    """Additive mask ``[b, 1, 1, s, s]``: key ``j`` is visible from query ``i`` when it is not
    padding and (``causal``) ``j <= i`` (and, with a ``window``, ``i - j < window``).
    Bidirectional (``causal=False``) masks are ``[b, 1, 1, 1, s]``, padding only."""
    if window is not None and not causal:
        raise ValueError("a sliding window applies to causal masks; use window_mask otherwise")
    keys = g.op("Unsqueeze", g.op("Cast", "attention_mask", to=_BOOL),
                g.constant("/key_axes", i64(1, 2, 3)))
    seq_len = g.op("Squeeze", g.op("Shape", "input_ids", start=1, end=2))
    steps = g.op("Range", g.constant("/zero_r", np.array(0, np.int64)), seq_len,
                 g.constant("/one_r", np.array(1, np.int64)))
    visible = keys
    if causal:
        cols = g.op("Unsqueeze", steps, g.constant("/row_axis", i64(0)))
        rows = g.op("Unsqueeze", steps, g.constant("/col_axis", i64(1)))
        allowed = g.op("LessOrEqual", cols, rows)
        if window is not None:
            near = g.op("Less", g.op("Sub", rows, cols),
                        g.constant(f"/window{window}", np.array(window, np.int64)))
            allowed = g.op("And", allowed, near)
        visible = g.op("And", allowed, keys)
    zero = g.constant("/zero_f", f32(0.0))
    return g.op("Where", visible, zero, _minimum(g))


def attend(g: GraphWriter, q: str, k_t: str, v: str, mask: str, scale: float, *,
           divide: bool = False, bias: str | None = None, tag: str) -> str:
    """``softmax(q @ k_t * scale + bias + mask) @ v``.

    Args:
        k_t: keys already transposed to ``[..., head_dim, keys]``.
        divide: divide by ``scale`` instead of multiplying (BERT's ``/ sqrt(head_dim)``, the
            form ONNX Runtime's attention fusion matches).
        bias: an additive position bias broadcastable to the scores (ALiBi, relative bias).
    """
    scores = g.op("MatMul", q, k_t)
    if divide:
        scores = g.op("Div", scores, g.constant(f"{tag}/sqrt_head_dim", f32(scale)))
    else:
        scores = g.op("Mul", scores, g.constant(f"{tag}/scale", f32(scale)))
    if bias is not None:
        scores = g.op("Add", scores, bias)
    return g.op("MatMul", g.op("Softmax", g.op("Add", scores, mask), axis=-1), v)


@dataclass(frozen=True)
class GroupedQueryShape:
    """Head layout of a decoder's attention."""

    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    #: Qwen3: RMSNorm over each query and key head (``q_norm``, ``k_norm``) before RoPE.
    qk_norm: bool = False
    #: Qwen2: biases on the q/k/v projections; ``o_proj`` has none.
    qkv_bias: Bias = "none"
    scale: float | None = None  # default head_dim ** -0.5
    norm_unit_offset: bool = False
    #: The model width; given, every projection's shape is checked against it.
    hidden_size: int | None = None


def grouped_query_attention(
    g: GraphWriter, ck: Checkpoint, h: str, h_q: str, rope: tuple[str, str, str, str],
    mask: str, prefix: str, shape: GroupedQueryShape, *, bias: str | None = None,
    past: tuple[str, str] | None = None, present: list[tuple[str, str]] | None = None,
) -> str:
    """Grouped-query self-attention of the block ``prefix`` (``{prefix}.q_proj`` ...).

    Queries come from ``h_q`` (every position, or the last one only), keys and values from
    ``h``. Queries are laid out ``[batch, kv_heads, group, seq, head_dim]`` and keys
    ``[batch, kv_heads, 1, ...]`` so that MatMul broadcasts each key head over its group of
    query heads (transformers' ``repeat_kv`` order) without copying keys or values.

    Args:
        rope: cos and sin for the keys, then for the queries (``[b, 1, 1, s, head_dim]``).
        past: keys and values of earlier positions (a shared prompt prefix run once),
            ``[1, kv_heads, 1, past, head_dim]`` after RoPE, put before this block's own
            (``mask`` then covers ``past + s`` keys).
        present: when given, the keys and values attended to (past ones included) are
            appended to it, so a graph can output them for a later ``past``.
    """
    s = shape
    group = s.num_heads // s.num_kv_heads
    cos_k, sin_k, cos_q, sin_q = rope

    def heads(x: str, part: str, n: int) -> str:
        size = None if s.hidden_size is None else (n * s.head_dim, s.hidden_size)
        projected = linear(g, ck, x, f"{prefix}.{part}_proj", s.qkv_bias, size)
        return g.op("Reshape", projected,
                    g.constant(f"{prefix}/{part}_shape", i64(0, 0, n, s.head_dim)))

    def norm(x: str, part: str) -> str:
        if not s.qk_norm:
            return x
        return rms_norm(g, ck, x, f"{prefix}.{part}_norm", s.rms_norm_eps,
                        unit_offset=s.norm_unit_offset, width=s.head_dim)

    q = norm(heads(h_q, "q", s.num_heads), "q")
    q = g.op("Reshape", q, g.constant(f"{prefix}/q_groups",
                                      i64(0, 0, s.num_kv_heads, group, s.head_dim)))
    q = rotate_half(g, g.op("Transpose", q, perm=[0, 2, 3, 1, 4]), cos_q, sin_q, s.head_dim)
    k = norm(heads(h, "k", s.num_kv_heads), "k")
    k = g.op("Unsqueeze", g.op("Transpose", k, perm=[0, 2, 1, 3]),
             g.constant(f"{prefix}/k_group_axis", i64(2)))
    k = rotate_half(g, k, cos_k, sin_k, s.head_dim)
    v = g.op("Unsqueeze", g.op("Transpose", heads(h, "v", s.num_kv_heads), perm=[0, 2, 1, 3]),
             g.constant(f"{prefix}/v_group_axis", i64(2)))
    if past is not None:
        # One prefix serves every row of the batch: broadcast it over the batch axis.
        batch = g.op("Concat", g.op("Shape", h, start=0, end=1),
                     g.constant("/past_expand_rest", i64(1, 1, 1, 1)), axis=0)
        k = g.op("Concat", g.op("Expand", past[0], batch), k, axis=3)
        v = g.op("Concat", g.op("Expand", past[1], batch), v, axis=3)
    if present is not None:
        present.append((k, v))
    scale = s.head_dim ** -0.5 if s.scale is None else s.scale
    k_t = g.op("Transpose", k, perm=[0, 1, 2, 4, 3])
    context = attend(g, q, k_t, v, mask, scale, bias=bias, tag=prefix)
    context = g.op("Reshape", g.op("Transpose", context, perm=[0, 3, 1, 2, 4]),
                   g.constant(f"{prefix}/merge", i64(0, 0, s.num_heads * s.head_dim)))
    out = None if s.hidden_size is None else (s.hidden_size, s.num_heads * s.head_dim)
    return linear(g, ck, context, f"{prefix}.o_proj", "none", out)
