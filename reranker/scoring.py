"""Turning raw backend scores into ranked results: the one place scores are post-processed.

Backends return one raw score per document in input order. Here, and only here, scores are
validated, activated (sigmoid in float64 for logit backends; nothing for backends whose scores
are already probabilities), stably sorted so that ties keep input order, cut to ``min_score``
and ``top_k`` and paired with their documents (and, when the backend chunked them, the span of
each document's best window).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from reranker.errors import BackendError, InvalidInputError
from reranker.types import Document, RerankResult

__all__ = [
    "activate",
    "build_results",
    "check_min_score",
    "check_scores",
    "check_top_k",
    "rank",
    "sigmoid",
]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, computed in float64.

    float64 keeps strong matches apart: in float16 (and near 1.0 in float32) large logits
    saturate to exactly 1.0 and would tie.
    """
    x = np.asarray(logits, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def check_scores(scores: Any, expected: int, *, source: str) -> np.ndarray:
    """Validate a backend's output: numeric, one finite value per document.

    Raises:
        BackendError: wrong length, non-numeric or non-finite scores; names the source.
    """
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BackendError(f"{source} returned non-numeric scores") from exc
    if arr.ndim != 1:
        arr = arr.reshape(-1) if arr.size == expected else arr
    if arr.ndim != 1 or arr.shape[0] != expected:
        raise BackendError(
            f"{source} returned {arr.size} scores for {expected} documents"
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise BackendError(
            f"{source} returned a non-finite score ({arr[first]}) for document {first}"
        )
    return arr


def activate(raw: np.ndarray, *, scores_are_probabilities: bool) -> np.ndarray:
    """Map raw scores to relevance probabilities (float64)."""
    if scores_are_probabilities:
        return np.asarray(raw, dtype=np.float64)
    return sigmoid(raw)


def check_top_k(top_k: object) -> int | None:
    """Return ``top_k`` if it is ``None`` or an int >= 1, else raise ``InvalidInputError``."""
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
        raise InvalidInputError(
            f"top_k must be an integer >= 1, got {type(top_k).__name__}", param="top_k"
        )
    if top_k < 1:
        raise InvalidInputError(f"top_k must be >= 1, got {top_k}", param="top_k")
    return int(top_k)


def check_min_score(min_score: object) -> float | None:
    """Return ``min_score`` as a float if it is ``None`` or a finite number, else raise
    ``InvalidInputError``."""
    if min_score is None:
        return None
    if isinstance(min_score, bool) or not isinstance(min_score, (int, float, np.number)):
        raise InvalidInputError(
            f"min_score must be a number, got {type(min_score).__name__}", param="min_score"
        )
    if not np.isfinite(min_score):
        raise InvalidInputError(f"min_score must be finite, got {min_score}", param="min_score")
    return float(min_score)


def rank(scores: np.ndarray, top_k: int | None = None) -> np.ndarray:
    """Indices of ``scores`` from best to worst; equal scores keep input order."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return order if top_k is None else order[:top_k]


def build_results(
    raw: np.ndarray,
    documents: Sequence[Document] | None,
    *,
    scores_are_probabilities: bool,
    top_k: int | None = None,
    raw_scores: bool = False,
    return_documents: bool = True,
    min_score: float | None = None,
    spans: Sequence[tuple[int, int] | None] | None = None,
) -> list[RerankResult]:
    """Rank documents by score and build the result list.

    Args:
        raw: one raw score per document, in input order (already checked).
        documents: the documents as the caller gave them (attached when asked).
        scores_are_probabilities: the backend's scores need no activation.
        top_k: keep only the best ``top_k``; ``None`` keeps all.
        raw_scores: report raw scores (logits) instead of probabilities.
        return_documents: attach each document to its result.
        min_score: drop results scoring below this, on the score reported (a probability
            unless ``raw_scores``); applied with ``top_k``: at most ``top_k`` results, all at or
            above ``min_score``.
        spans: per document, the character span of its best window (attached when given).
    """
    scores = np.asarray(raw, dtype=np.float64)
    if not raw_scores:
        scores = activate(scores, scores_are_probabilities=scores_are_probabilities)
    order = rank(scores)
    if min_score is not None:
        order = order[scores[order] >= min_score]
    order = order if top_k is None else order[:top_k]
    attach = return_documents and documents is not None
    return [
        RerankResult(
            index=int(i),
            score=float(scores[i]),
            document=_as_result_document(documents[i]) if attach else None,  # type: ignore[index]
            span=spans[i] if spans is not None else None,
        )
        for i in order
    ]


def _as_result_document(doc: Document) -> str | dict[str, Any]:
    return doc if isinstance(doc, str) else dict(doc)
