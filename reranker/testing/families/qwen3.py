"""Test kit of the ``qwen3`` family (Qwen3-Reranker, yes/no and seq-cls): a tiny checkpoint
and the float64 reference of the model card's rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reranker.testing.families.qwen3_models import build_qwen3_reranker
from reranker.testing.families.qwen3_reference import (
    DEFAULT_INSTRUCTION,
    reference_decoder_encode,
    reference_decoder_scores,
)

__all__ = ["NAME", "make_checkpoint", "reference_scores"]

NAME = "qwen3"


def make_checkpoint(folder: Path, **shape: Any) -> Path:
    """A tiny deterministic Qwen3-Reranker folder; ``shape``: :func:`build_qwen3_reranker`'s
    keywords (``seq_cls=True``: the seq-cls conversion)."""
    return build_qwen3_reranker(folder, **shape)


def reference_scores(folder: Path, query: str, documents: list[str], *,
                     max_length: int = 256, instruction: str = DEFAULT_INSTRUCTION
                     ) -> np.ndarray:
    """``logit_yes - logit_no`` (seq-cls: the score row) after the model card's prompt."""
    enc = reference_decoder_encode(folder, query, list(documents), max_length, instruction)
    return reference_decoder_scores(folder, enc["input_ids"], enc["attention_mask"])
