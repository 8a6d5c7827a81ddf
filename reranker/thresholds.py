"""Picking a ``min_score`` on labelled data: the score at which precision or recall reaches a
target.

Every (query, document) pair of a run is a prediction "relevant" when its score is at or above
the threshold; the qrels say which are (relevance >= 1; pairs without a judgment count as not
relevant, as trec_eval counts them). Precision is over the pairs kept; recall is over the
relevant documents of the queries the run answers (a relevant document the run never scored
cannot be kept by any threshold). The run's scores must be the ones the threshold will be
applied to: the model's probabilities, as ``reranker rerank`` and the HTTP API return them.

Example::

    pick = pick_threshold(qrels, run, "precision", 0.9)
    print(pick.threshold, pick.precision, pick.recall)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from reranker.errors import InvalidInputError

__all__ = ["ThresholdPick", "parse_threshold_target", "pick_threshold"]

Metric = Literal["precision", "recall"]


@dataclass(frozen=True)
class ThresholdPick:
    """The threshold chosen for a target and what it gives on the labelled data."""

    metric: Metric
    target: float
    threshold: float
    precision: float
    recall: float
    kept: int
    """Pairs at or above the threshold."""
    pairs: int
    relevant: int
    """Relevant documents of the queries the run answers."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_threshold_target(text: str) -> tuple[Metric, float]:
    """``"precision=0.9"`` or ``"recall=0.8"`` as (metric, target).

    Raises:
        InvalidInputError: another metric, or a target outside (0, 1].
    """
    name, _, value = text.partition("=")
    name = name.strip().lower()
    if name not in ("precision", "recall"):
        raise InvalidInputError(
            f"threshold target must be precision=T or recall=T, got {text!r}",
            param="threshold_for",
        )
    try:
        target = float(value)
    except ValueError as exc:
        raise InvalidInputError(
            f"threshold target {text!r}: {value!r} is not a number", param="threshold_for"
        ) from exc
    if not 0.0 < target <= 1.0:
        raise InvalidInputError(
            f"threshold target {text!r} must be in (0, 1]", param="threshold_for"
        )
    return ("precision" if name == "precision" else "recall"), target


def pick_threshold(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    metric: Metric,
    target: float,
) -> ThresholdPick:
    """The threshold that reaches ``target`` for ``metric`` while keeping the most of the other:
    for precision, the lowest score whose precision is at least ``target`` (most recall); for
    recall, the highest score whose recall is at least ``target`` (most precision).

    Raises:
        InvalidInputError: no judged relevant document among the run's queries, or no threshold
            reaches the target (the message gives the best one can reach).
    """
    pairs = sorted(
        ((score, qrels.get(q, {}).get(d, 0) >= 1) for q, docs in run.items() for d, score
         in docs.items()),
        key=lambda p: -p[0],
    )
    relevant = sum(1 for q in run for rel in qrels.get(q, {}).values() if rel >= 1)
    if not pairs or relevant == 0:
        raise InvalidInputError(
            "the run's queries have no relevant document in the qrels: no threshold to pick",
            param="qrels",
        )
    # Candidate thresholds are the distinct scores: the cut after the last pair of each score.
    points: list[tuple[float, float, float, int]] = []
    hits = 0
    for i, (score, is_rel) in enumerate(pairs):
        hits += is_rel
        if i + 1 < len(pairs) and pairs[i + 1][0] == score:
            continue
        points.append((score, hits / (i + 1), hits / relevant, i + 1))
    index = 1 if metric == "precision" else 2
    reached = [p for p in points if p[index] >= target]
    if not reached:
        best = max(p[index] for p in points)
        raise InvalidInputError(
            f"no threshold reaches {metric} {target:g} on this run (best: {best:.4f})",
            param="threshold_for",
        )
    # Points run from the highest score down: precision wants the last (lowest) that reaches
    # the target, recall the first (highest).
    chosen = reached[-1] if metric == "precision" else reached[0]
    threshold, precision, recall, kept = chosen
    return ThresholdPick(metric, target, threshold, precision, recall, kept, len(pairs), relevant)
