"""Relative-position terms added to attention scores: token distances and ALiBi.

- :func:`distances` ``[s, s]`` int64: ``i - j`` for query ``i`` and key ``j`` (DeBERTa's
  relative positions index bucket tables with it).
- :func:`relative_shift`: scores computed against ``2n`` distances (``n - 1`` down to
  ``-n``) turned into scores against the ``n`` keys (Transformer-XL's shift; DeBERTa's
  content-to-position terms), without gathering through a ``[batch, heads, n, n]`` index.
- :func:`alibi_slopes` and :func:`alibi_bias` ``[1, heads, s, s]``: ``-slope_h * |i - j|``
  (Press et al.; JinaBERT, MPT, BLOOM-style models), built once and shared by every layer
  through :func:`~reranker.models.layers.attention.attend`'s ``bias``.
"""

from __future__ import annotations

import math

import numpy as np

from reranker.models.writer import GraphWriter, i64

__all__ = ["alibi_bias", "alibi_slopes", "distances", "positions", "relative_shift"]


def positions(g: GraphWriter) -> str:
    """``[0, 1, ..., s - 1]`` for the sequence length of ``input_ids``."""
    seq_len = g.op("Squeeze", g.op("Shape", "input_ids", start=1, end=2))
    return g.op("Range", g.constant("/zero", np.array(0, np.int64)), seq_len,
                g.constant("/one", np.array(1, np.int64)))


def distances(g: GraphWriter) -> str:
    """``i - j`` ``[s, s]`` (int64), query ``i`` on rows, key ``j`` on columns."""
    steps = positions(g)
    rows = g.op("Unsqueeze", steps, g.constant("/ax1", i64(1)))
    cols = g.op("Unsqueeze", steps, g.constant("/ax0", i64(0)))
    return g.op("Sub", rows, cols)


def relative_shift(g: GraphWriter, scores: str, n: str) -> str:
    """``out[..., x, y] = scores[..., x, n - 1 - x + y]`` for ``scores [b, h, n, 2n]`` whose
    column ``c`` holds distance ``x - y = n - 1 - c``; ``n`` is the length as an int64 ``[1]``.

    Row ``x`` shifted left by ``n - 1 - x`` is the flattened rows read at a stride of
    ``2n - 1``: one reshape, one slice, one reshape, one slice.
    """
    one = g.constant("/one1", i64(1))
    stride = g.op("Sub", g.op("Mul", n, g.constant("/two", i64(2))), one)
    start = g.op("Sub", n, one)
    lead = g.op("Shape", scores, start=0, end=2)
    flat = g.op("Reshape", scores, g.op("Concat", lead, g.constant("/minus1", i64(-1)), axis=0))
    flat = g.op("Slice", flat, start, g.op("Add", start, g.op("Mul", n, stride)),
                g.constant("/axis2", i64(2)))
    rows = g.op("Reshape", flat, g.op("Concat", lead, n, stride, axis=0))
    return g.op("Slice", rows, g.constant("/zero1", i64(0)), n, g.constant("/axis3", i64(3)))


def alibi_slopes(heads: int) -> list[float]:
    """The ALiBi slope of each head: ``2^(-8/n)`` powers for ``n`` a power of two, else those
    of the power below and every other slope of the power above (the paper's rule)."""

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
        return [start ** (i + 1) for i in range(n)]

    if math.log2(heads).is_integer():
        return power_of_two(heads)
    closest = 2 ** math.floor(math.log2(heads))
    return power_of_two(closest) + alibi_slopes(2 * closest)[0::2][: heads - closest]


def alibi_bias(g: GraphWriter, heads: int) -> str:
    """``-slope_h * |i - j|`` ``[heads, s, s]`` (float32; broadcasts over the batch)."""
    slopes = -np.asarray(alibi_slopes(heads), dtype=np.float32).reshape(heads, 1, 1)
    distance = g.op("Cast", g.op("Abs", distances(g)), to=1)  # 1: onnx.TensorProto.FLOAT
    return g.op("Mul", distance, g.constant(f"/alibi_slopes{heads}", slopes))
