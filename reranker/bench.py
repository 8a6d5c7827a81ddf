"""``reranker bench``: measure the configured models on this machine.

Each model (a shorthand, a JSON config or a JSON file, as ``reranker rerank --model`` takes) is
loaded in this process and scores the same requests: by default RAG-style candidate sets cut
from English documentation that ships with Python (40 to 300 words each, fixed seed), or the
caller's own query and documents. Reported per model: load time, pairs/s, p50/p95 latency per
request, and the resident memory the model added. With ``--optimization none,int8`` each local
model is measured in each variant, and variants after the first report their ranking agreement
with it (top-10 overlap, max score difference on the backend's raw scale: logits for local
models, so a difference of 1.5 is not a probability), so a faster variant's quality cost is
visible.
Put a float32 variant first to measure against float32: for ``fast`` that is ``fused`` (its
``none`` runs the repository's int8 file, and its default is ``int8``).

Example::

    reranker bench --model fast --optimization fused,int8,none --requests 3
    reranker bench --model balanced --optimization none,int8
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BenchResult", "bench_model", "run_bench"]


@dataclass
class BenchResult:
    """Figures for one model (or one variant of it)."""

    model: str
    config: dict[str, Any]
    load_s: float
    pairs_per_s: float
    p50_s: float
    p95_s: float
    rss_added_mb: float | None
    requests: int
    documents: int
    agreement: dict[str, float] = field(default_factory=dict)
    #: What the scores (and so ``agreement["max_score_diff"]``) are: ``"raw logit"`` for local
    #: models, whose backends return logits; ``"probability"`` for providers.
    score_scale: str = "raw logit"


def _rss_mb() -> float | None:
    """Resident memory of this process now (Linux), else None."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def bench_model(
    config: Any, requests: Sequence[tuple[str, Sequence[str]]], *, warmup: bool = True
) -> tuple[BenchResult, list[np.ndarray]]:
    """Load ``config``, score every request once, and return the figures and raw scores.

    Example::

        result, scores = bench_model("fast", [("what is onnx", ["a format", "a fish"])])
    """
    from reranker.api import Reranker
    from reranker.config import parse_backend_config

    cfg = parse_backend_config(config)
    before = _rss_mb()
    started = time.perf_counter()
    rr = Reranker(cfg)
    try:
        load_s = time.perf_counter() - started
        if warmup:
            query, docs = requests[0]
            rr.backend.score(query, list(docs[: min(8, len(docs))]))
        latencies: list[float] = []
        scores: list[np.ndarray] = []
        for query, docs in requests:
            t0 = time.perf_counter()
            raw = rr.backend.score(query, list(docs))
            latencies.append(time.perf_counter() - t0)
            scores.append(np.asarray(raw, dtype=np.float64))
        after = _rss_mb()
        name = rr.name
        scale = "probability" if rr.backend.scores_are_probabilities else "raw logit"
    finally:
        rr.close()
    pairs = sum(len(docs) for _, docs in requests)
    result = BenchResult(
        model=name,
        config=cfg.model_dump(exclude_defaults=True),
        load_s=round(load_s, 3),
        pairs_per_s=round(pairs / sum(latencies), 1),
        p50_s=round(statistics.median(latencies), 4),
        p95_s=round(_percentile(latencies, 0.95), 4),
        rss_added_mb=None if before is None or after is None else round(after - before, 1),
        requests=len(requests),
        documents=pairs,
        score_scale=scale,
    )
    return result, scores


def _agreement(scores: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> dict[str, float]:
    overlaps = []
    for a, b in zip(scores, reference, strict=True):
        k = min(10, len(a))
        top_a = set(np.argsort(-a, kind="stable")[:k].tolist())
        overlaps.append(len(top_a & set(np.argsort(-b, kind="stable")[:k].tolist())) / k)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(scores, reference, strict=True))
    return {"top10_overlap": round(float(np.mean(overlaps)), 3), "max_score_diff": round(diff, 4)}


def _variants(model: Any, optimizations: Sequence[str]) -> list[Any]:
    from reranker.config import parse_backend_config

    cfg = parse_backend_config(model)
    if not cfg.runs_locally or not optimizations:
        return [cfg]
    return [parse_backend_config({**cfg.model_dump(), "optimization": o}) for o in optimizations]


def run_bench(
    models: Sequence[Any],
    requests: Sequence[tuple[str, Sequence[str]]],
    *,
    optimizations: Sequence[str] = (),
) -> list[BenchResult]:
    """Benchmark each model (and each optimization of a local one) on the same requests."""
    results = []
    for model in models:
        reference: list[np.ndarray] | None = None
        for cfg in _variants(model, optimizations):
            result, scores = bench_model(cfg, requests)
            if reference is None:
                reference = scores
            else:
                result.agreement = _agreement(scores, reference)
            results.append(result)
    return results
