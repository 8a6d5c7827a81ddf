"""Activation functions by their ``config.json`` names."""

from __future__ import annotations

from reranker.errors import ModelLoadError
from reranker.models.writer import GraphWriter

__all__ = ["ACTIVATIONS", "activation", "check_activation"]

ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish")


def check_activation(name: object, key: str, source: str, allowed: tuple[str, ...] = ACTIVATIONS
                     ) -> str:
    """``name`` as a supported activation; ``ModelLoadError`` naming ``key`` otherwise."""
    if not isinstance(name, str) or name not in allowed:
        raise ModelLoadError(f"{key}={name!r} in {source}: supported {', '.join(allowed)}")
    return name


def activation(g: GraphWriter, x: str, kind: str) -> str:
    """``kind`` applied to ``x`` (GELU exact or tanh-approximated, ReLU, SiLU)."""
    if kind == "relu":
        return g.op("Relu", x)
    if kind in ("silu", "swish"):
        return g.op("Mul", x, g.op("Sigmoid", x))
    return g.gelu(x, approximate=kind != "gelu")
