"""Bounds on the work of a request in the local backend: the per-run memory budget (runs are
split, an over-budget row runs alone), the per-request token budget (413 naming the limit) and
cancellation between ONNX runs (a cancelled item's remaining runs are skipped, others go on).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from reranker import RequestTooLargeError, Reranker
from reranker.backends import ScoreItem
from reranker.onnx_model import EncoderShape, plan_batches
from reranker.testing.textsamples import DOCUMENTS, QUERY

LONG = " ".join(["the quick brown fox jumps over the lazy dog"] * 40)


def _reranker(folder: Path, **options: object) -> Reranker:
    return Reranker({"type": "custom", "model_id": str(folder), **options})


def test_run_memory_counts_attention_quadratically() -> None:
    shape = EncoderShape(num_heads=16, hidden_size=1024, intermediate_size=4096)
    one = shape.run_bytes(1, 8192)
    # 2 x 16 heads x 8192^2 float32 attention alone is 8 GiB: a window is several GiB.
    assert one > 8 * 2**30
    assert shape.run_bytes(4, 8192) == 4 * one
    assert shape.run_bytes(1, 4096) < one / 3.8  # halving the length nearly quarters it


def test_plan_batches_splits_runs_to_fit_the_memory_budget() -> None:
    shape = EncoderShape(num_heads=2, hidden_size=8, intermediate_size=16)
    lengths = [100] * 8
    budget = 3 * shape.run_bytes(1, 100)
    batches = plan_batches(lengths, 32, 10**9, row_bytes=lambda w: shape.run_bytes(1, w),
                           max_run_bytes=budget)
    assert [len(b) for b in batches] == [3, 3, 2]
    unbounded = plan_batches(lengths, 32, 10**9)
    assert [len(b) for b in unbounded] == [8]


def test_the_budget_splits_the_runs_of_a_request(bert_model: Path) -> None:
    docs = [LONG] * 6
    wide = _reranker(bert_model, max_tokens_per_batch=10**6, parallel_runs=1)
    model = wide.backend.model  # type: ignore[attr-defined]
    runs: list[tuple[int, int]] = []
    model.on_run = lambda rows, width: runs.append((rows, width))
    expected = wide.rerank(QUERY, docs, raw_scores=True)
    assert [r for r, _ in runs] == [6]
    width = runs[0][1]
    budget_mb = 2
    per_run = budget_mb * 2**20 // model.run_bytes(1, width)
    assert 1 < per_run < 6  # the budget holds some of the six rows, not all
    tight = _reranker(bert_model, max_tokens_per_batch=10**6, parallel_runs=1,
                      max_run_memory_mb=budget_mb)
    runs_tight: list[tuple[int, int]] = []
    tight.backend.model.on_run = (  # type: ignore[attr-defined]
        lambda rows, width: runs_tight.append((rows, width)))
    got = tight.rerank(QUERY, docs, raw_scores=True)
    assert [r for r, _ in runs_tight] == [per_run] * (6 // per_run) + (
        [6 % per_run] if 6 % per_run else [])
    assert all(tight.backend.model.run_bytes(r, w) <= budget_mb * 2**20  # type: ignore[attr-defined]
               for r, w in runs_tight)
    assert [r.score for r in got] == pytest.approx([r.score for r in expected], abs=1e-4)


def test_a_row_over_the_budget_runs_alone(bert_model: Path) -> None:
    rr = _reranker(bert_model, parallel_runs=2, threads=2)
    model = rr.backend.model  # type: ignore[attr-defined]
    short = max(len(r) for r in rr.backend.encode(QUERY, DOCUMENTS).ids)  # type: ignore[attr-defined]
    long = min(len(r) for r in rr.backend.encode(QUERY, [LONG]).ids)  # type: ignore[attr-defined]
    assert short < long
    # The tiny model's runs are far below a megabyte: a budget of one short row, set directly.
    model.max_run_bytes = model.run_bytes(1, short)
    in_flight = 0
    over_in_flight = 0
    overlaps = 0
    over_runs = 0
    lock = threading.Lock()
    release = model._run_padded

    def counted(ids, type_ids):  # type: ignore[no-untyped-def]
        nonlocal in_flight, over_in_flight, overlaps, over_runs
        over = model.run_bytes(len(ids), max(map(len, ids))) > model.max_run_bytes
        with lock:
            if in_flight and (over or over_in_flight):
                overlaps += 1
            in_flight += 1
            over_in_flight += over
            over_runs += over
        try:
            return release(ids, type_ids)
        finally:
            with lock:
                in_flight -= 1
                over_in_flight -= over

    model._run_padded = counted
    results = rr.rerank(QUERY, [LONG] * 6 + list(DOCUMENTS) * 4)
    assert len(results) == 6 + 4 * len(DOCUMENTS)
    assert over_runs == 6  # each long row ran by itself (a budget of one row holds none)
    assert overlaps == 0  # and no other run was in flight beside it


def test_token_budget_is_a_413_error_naming_the_limit(bert_model: Path) -> None:
    rr = _reranker(bert_model, max_request_tokens=200)
    assert len(rr.rerank(QUERY, DOCUMENTS[:2])) == 2
    with pytest.raises(RequestTooLargeError) as info:
        rr.rerank(QUERY, [LONG] * 3)
    assert info.value.param == "max_request_tokens"
    assert "max_request_tokens=200" in str(info.value)
    from deployments.serve.errors import to_api_error

    err = to_api_error(info.value)
    assert (err.status, err.type, err.param) == (413, "request_too_large", "max_request_tokens")


def test_token_budget_fails_only_the_item_over_it_in_a_batch(bert_model: Path) -> None:
    backend = _reranker(bert_model, max_request_tokens=200).backend
    out = backend.score_batch([ScoreItem(QUERY, DOCUMENTS[:2]), ScoreItem(QUERY, [LONG] * 3)])
    assert isinstance(out[0], np.ndarray) and out[0].shape == (2,)
    assert isinstance(out[1], RequestTooLargeError)


def test_a_cancelled_item_stops_running_while_others_go_on(bert_model: Path) -> None:
    rr = _reranker(bert_model, parallel_runs=1, max_tokens_per_batch=512)
    model = rr.backend.model  # type: ignore[attr-defined]
    cancel = threading.Event()
    runs: list[int] = []

    def on_run(rows: int, width: int) -> None:
        runs.append(rows)
        if len(runs) == 2:
            cancel.set()  # the client went away after two runs

    model.on_run = on_run
    doomed = ScoreItem(QUERY, [LONG + f" {i}" for i in range(8)], cancel=cancel)
    kept = ScoreItem(QUERY, list(DOCUMENTS))
    out = rr.backend.score_batch([doomed, kept])
    executed = len(runs)
    full: list[int] = []
    model.on_run = lambda rows, width: full.append(rows)
    rr.backend.score_batch([ScoreItem(QUERY, doomed.documents), kept])
    assert executed < len(full)  # the cancelled item's remaining runs never ran
    assert isinstance(out[0], Exception) and "cancelled" in str(out[0])
    alone = rr.backend.score(QUERY, list(DOCUMENTS))
    assert isinstance(out[1], np.ndarray)
    np.testing.assert_allclose(out[1], alone, atol=1e-5)
