"""Normalization layers: LayerNorm, RMSNorm and the ``(1 + w)`` RMSNorm of Gemma."""

from __future__ import annotations

import numpy as np

from reranker.models.checkpoint import Checkpoint
from reranker.models.writer import DerivedTensor, GraphWriter, f32

__all__ = ["layer_norm", "rms_norm"]


def layer_norm(
    g: GraphWriter, ck: Checkpoint, x: str, name: str, eps: float, *, bias: bool | None = True
) -> str:
    """LayerNormalization over the last axis with ``name.weight`` and ``name.bias``.

    ``bias=None`` uses the bias when the checkpoint has one (``norm_bias`` configs)."""
    b = ck[f"{name}.bias"] if bias else ck.optional(f"{name}.bias") if bias is None else None
    return g.layer_norm(x, ck[f"{name}.weight"], b, name, eps)


def rms_norm(
    g: GraphWriter, ck: Checkpoint, x: str, name: str, eps: float, *, unit_offset: bool = False
) -> str:
    """``x / sqrt(mean(x^2) + eps) * w`` (``unit_offset``: ``* (1 + w)``, Gemma).

    Written as the pattern ONNX Runtime fuses into ``SimplifiedLayerNormalization``.
    """
    variance = g.op("ReduceMean", g.op("Pow", x, g.constant("/rms/two", f32(2.0))),
                    axes=[-1], keepdims=1)
    eps_value = g.constant(f"/rms/eps{eps!r}", f32(eps))
    normed = g.op("Div", x, g.op("Sqrt", g.op("Add", variance, eps_value)))
    weight = ck[f"{name}.weight"]
    if unit_offset:
        weight = DerivedTensor(weight, weight.shape, lambda a: a.astype(np.float32) + 1.0)
    return g.op("Mul", normed, g.weight(f"{name}.weight", weight))
