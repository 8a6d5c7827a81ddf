"""Rotary position embeddings (the ``rotate_half`` convention of transformers)."""

from __future__ import annotations

import numpy as np

from reranker.models.writer import GraphWriter, i64

__all__ = ["inverse_frequencies", "llama3_frequencies", "rope_cos_sin", "rotate_half"]


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


def llama3_frequencies(inv_freq: np.ndarray, *, factor: float, low_freq_factor: float,
                       high_freq_factor: float, original_max_position_embeddings: float
                       ) -> np.ndarray:
    """Llama 3's frequency scaling (``rope_type: "llama3"``): wavelengths longer than
    ``original / low_freq_factor`` are divided by ``factor``, those shorter than
    ``original / high_freq_factor`` kept, those between interpolated smoothly."""
    inv = inv_freq.astype(np.float64)
    old = float(original_max_position_embeddings)
    wavelen = 2 * np.pi / inv
    scaled = np.where(wavelen > old / low_freq_factor, inv / factor, inv)
    smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    medium = (wavelen >= old / high_freq_factor) & (wavelen <= old / low_freq_factor)
    return np.where(medium, (1 - smooth) * scaled / factor + smooth * scaled,
                    scaled).astype(np.float32)
