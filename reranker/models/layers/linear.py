"""torch ``Linear`` layers read from a checkpoint."""

from __future__ import annotations

from typing import Literal

from reranker.models.checkpoint import Checkpoint
from reranker.models.sizes import expect_shape
from reranker.models.writer import GraphWriter

__all__ = ["linear"]

Bias = Literal["required", "optional", "none"]


def linear(g: GraphWriter, ck: Checkpoint, x: str, name: str, bias: Bias = "required",
           shape: tuple[int, int] | None = None) -> str:
    """``x @ W.T + b`` with ``W = ck[name.weight]``; ``bias`` says whether ``name.bias`` must
    exist (``required``), is used when present (``optional``) or is not read (``none``);
    ``shape`` (``(out, in)``), when given, is checked against the weight and the bias."""
    b = (ck[f"{name}.bias"] if bias == "required"
         else ck.optional(f"{name}.bias") if bias == "optional" else None)
    if shape is not None:
        expect_shape(ck, f"{name}.weight", shape)
        if b is not None:
            expect_shape(ck, f"{name}.bias", shape[:1])
    return g.linear(x, ck[f"{name}.weight"], b, name)
