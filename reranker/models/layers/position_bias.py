"""Relative-position terms added to attention scores: token distances and ALiBi.

- :func:`distances` ``[s, s]`` int64: ``i - j`` for query ``i`` and key ``j`` (DeBERTa's
  relative positions index bucket tables with it).
- :func:`alibi_slopes` and :func:`alibi_bias` ``[1, heads, s, s]``: ``-slope_h * |i - j|``
  (Press et al.; JinaBERT, MPT, BLOOM-style models), built once and shared by every layer
  through :func:`~reranker.models.layers.attention.attend`'s ``bias``.
"""

from __future__ import annotations

import math

import numpy as np

from reranker.models.writer import GraphWriter, i64

__all__ = ["alibi_bias", "alibi_slopes", "distances", "positions"]


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
