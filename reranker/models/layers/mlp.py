"""Feed-forward blocks: dense (BERT), gated (SwiGLU, GeGLU) and fused GLU (ModernBERT)."""

from __future__ import annotations

from reranker.models.checkpoint import Checkpoint
from reranker.models.layers.activations import activation
from reranker.models.layers.linear import Bias, linear
from reranker.models.writer import GraphWriter, i64

__all__ = ["dense_mlp", "fused_glu_mlp", "gated_mlp"]


def dense_mlp(g: GraphWriter, ck: Checkpoint, x: str, up: str, down: str, act: str,
              bias: Bias = "required", sizes: tuple[int, int] | None = None) -> str:
    """``down(act(up(x)))``; ``sizes`` (``(hidden, intermediate)``) checked when given."""
    up_shape = None if sizes is None else (sizes[1], sizes[0])
    return linear(g, ck, activation(g, linear(g, ck, x, up, bias, up_shape), act), down, bias,
                  sizes)


def gated_mlp(g: GraphWriter, ck: Checkpoint, x: str, prefix: str, act: str = "silu",
              bias: Bias = "none", sizes: tuple[int, int] | None = None) -> str:
    """``down_proj(act(gate_proj(x)) * up_proj(x))``: SwiGLU with ``silu``, GeGLU with a GELU.

    ``sizes`` (``(hidden, intermediate)``), when given, is checked against the weights."""
    up_shape = None if sizes is None else (sizes[1], sizes[0])
    gate = activation(g, linear(g, ck, x, f"{prefix}.gate_proj", bias, up_shape), act)
    up = linear(g, ck, x, f"{prefix}.up_proj", bias, up_shape)
    return linear(g, ck, g.op("Mul", gate, up), f"{prefix}.down_proj", bias, sizes)


def fused_glu_mlp(g: GraphWriter, ck: Checkpoint, x: str, wi: str, wo: str, act: str,
                  bias: Bias = "optional", sizes: tuple[int, int] | None = None) -> str:
    """``wo(act(value) * gate)`` where ``wi`` projects to ``[value, gate]`` in one matrix;
    ``sizes`` (``(hidden, intermediate)``) checked when given."""
    inter = ck[f"{wi}.weight"].shape[0] // 2 if sizes is None else sizes[1]
    both = linear(g, ck, x, wi, bias, None if sizes is None else (2 * inter, sizes[0]))
    value, gate = g.ops("Split", [both, g.constant(f"{wi}/glu_split", i64(inter, inter))], 2,
                        axis=-1)
    return linear(g, ck, g.op("Mul", activation(g, value, act), gate), wo, bias, sizes)
