"""Rotary position embeddings (the ``rotate_half`` convention of transformers)."""

from __future__ import annotations

import numpy as np

from reranker.models.writer import GraphWriter, i64

__all__ = ["inverse_frequencies", "rope_cos_sin", "rotate_half"]


def inverse_frequencies(head_dim: int, theta: float, *, float32_math: bool = False) -> np.ndarray:
    """``1 / theta^(2i / d)`` as float32; ``float32_math`` computes it in float32 as
    transformers' ModernBERT does (decoders compute it in float64, then round)."""
    steps = np.arange(0, head_dim, 2, dtype=np.int64)
    if float32_math:
        return (1.0 / (theta ** (steps.astype(np.float32) / head_dim))).astype(np.float32)
    return (1.0 / (theta ** (steps.astype(np.float64) / head_dim))).astype(np.float32)


def rope_cos_sin(g: GraphWriter, positions: str, inv_freq: np.ndarray, tag: str
                 ) -> tuple[str, str]:
    """cos and sin ``[..., head_dim]`` of float32 ``positions [...]``."""
    inv = g.constant(f"/{tag}/inv_freq", inv_freq.astype(np.float32))
    freqs = g.op("Mul", g.op("Unsqueeze", positions, g.constant("/rope/last_axis", i64(-1))), inv)
    emb = g.op("Concat", freqs, freqs, axis=-1)
    return g.op("Cos", emb), g.op("Sin", emb)


def rotate_half(g: GraphWriter, x: str, cos: str, sin: str, head_dim: int) -> str:
    """``x * cos + rotate_half(x) * sin`` over the last axis of size ``head_dim``."""
    half = head_dim // 2
    first, second = g.ops("Split", [x, g.constant(f"/rope/halves{head_dim}", i64(half, half))],
                          2, axis=-1)
    rotated = g.op("Concat", g.op("Neg", second), first, axis=-1)
    return g.op("Add", g.op("Mul", x, cos), g.op("Mul", rotated, sin))
