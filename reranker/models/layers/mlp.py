"""Feed-forward blocks: dense (BERT), gated (SwiGLU, GeGLU) and fused GLU (ModernBERT)."""

from __future__ import annotations

from reranker.models.checkpoint import Checkpoint
from reranker.models.layers.activations import activation
from reranker.models.layers.linear import Bias, linear
from reranker.models.writer import GraphWriter, i64

__all__ = ["dense_mlp", "fused_glu_mlp", "gated_mlp"]


def dense_mlp(g: GraphWriter, ck: Checkpoint, x: str, up: str, down: str, act: str,
              bias: Bias = "required") -> str:
    """``down(act(up(x)))``."""
    return linear(g, ck, activation(g, linear(g, ck, x, up, bias), act), down, bias)


def gated_mlp(g: GraphWriter, ck: Checkpoint, x: str, prefix: str, act: str = "silu",
              bias: Bias = "none") -> str:
    """``down_proj(act(gate_proj(x)) * up_proj(x))``: SwiGLU with ``silu``, GeGLU with a GELU."""
    gate = activation(g, linear(g, ck, x, f"{prefix}.gate_proj", bias), act)
    up = linear(g, ck, x, f"{prefix}.up_proj", bias)
    return linear(g, ck, g.op("Mul", gate, up), f"{prefix}.down_proj", bias)


def fused_glu_mlp(g: GraphWriter, ck: Checkpoint, x: str, wi: str, wo: str, act: str,
                  bias: Bias = "optional") -> str:
    """``wo(act(value) * gate)`` where ``wi`` projects to ``[value, gate]`` in one matrix."""
    inter = ck[f"{wi}.weight"].shape[0] // 2
    both = linear(g, ck, x, wi, bias)
    value, gate = g.ops("Split", [both, g.constant(f"{wi}/glu_split", i64(inter, inter))], 2,
                        axis=-1)
    return linear(g, ck, g.op("Mul", activation(g, value, act), gate), wo, bias)
