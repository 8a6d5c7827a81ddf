"""Test kit of the ``bert`` family (``BertForSequenceClassification``):
a tiny checkpoint and its float64 reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reranker.testing.families import _encoder_kit

__all__ = ["NAME", "make_checkpoint", "reference_scores"]

NAME = "bert"


def make_checkpoint(folder: Path, **shape: Any) -> Path:
    """A tiny deterministic BertForSequenceClassification folder
    (config, tokenizer, safetensors, an ONNX export); ``shape``:
    :func:`~reranker.testing.build_cross_encoder`'s keywords."""
    return _encoder_kit.make(Path(folder), "bert", shape)


def reference_scores(folder: Path, query: str, documents: list[str], **options: Any
                     ) -> np.ndarray:
    """Raw scores (the logit; ``[n, labels]`` for several labels) in float64;
    ``options``: ``max_length``."""
    return _encoder_kit.scores(Path(folder), query, documents, **options)
