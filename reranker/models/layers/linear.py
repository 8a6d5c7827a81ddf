"""torch ``Linear`` layers read from a checkpoint."""

from __future__ import annotations

from typing import Literal

from reranker.models.checkpoint import Checkpoint
from reranker.models.writer import GraphWriter

__all__ = ["linear"]

Bias = Literal["required", "optional", "none"]


def linear(g: GraphWriter, ck: Checkpoint, x: str, name: str, bias: Bias = "required") -> str:
    """``x @ W.T + b`` with ``W = ck[name.weight]``; ``bias`` says whether ``name.bias`` must
    exist (``required``), is used when present (``optional``) or is not read (``none``)."""
    b = (ck[f"{name}.bias"] if bias == "required"
         else ck.optional(f"{name}.bias") if bias == "optional" else None)
    return g.linear(x, ck[f"{name}.weight"], b, name)
