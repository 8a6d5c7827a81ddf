"""RerankService over fake deployment handles: routing, limits, fan-out and merge, failures.

No Ray is started: each variant's handle is a :class:`~tests.unit.serve_fakes.FakeScorer`.
"""

from __future__ import annotations

import asyncio

import pytest
from ray.exceptions import ActorDiedError

from deployments.serve.errors import ApiError, to_api_error
from reranker.errors import BackendError, InvalidInputError, ModelNotFoundError
from reranker.types import Truncation
from tests.unit.serve_fakes import (
    POISON,
    FakeScorer,
    ScoreCall,
    never,
    overlap_scores,
    score_by_overlap,
    service,
    settings,
)

DOCS = [f"doc {i} about {'cats' if i % 3 else 'dogs and cats'}" for i in range(10)]


async def _rerank(svc, texts=DOCS, **kw):  # type: ignore[no-untyped-def]
    args = {"model": None, "query": "dogs and cats", "texts": list(texts), "documents": None,
            "top_n": None, "return_documents": False, **kw}
    return await svc.rerank(**args)


def test_resolve_routes_by_name_and_defaults() -> None:
    svc = service()
    assert svc.resolve(None) == ("words", "plugin")
    assert svc.resolve("  ") == ("words", "plugin")
    assert svc.resolve("local") == ("local", "custom")
    with pytest.raises(ModelNotFoundError, match="words, local"):
        svc.resolve("gpt-9")
    assert svc.cuts_locally("local") and not svc.cuts_locally("words")


async def test_rerank_goes_to_the_named_models_variant() -> None:
    plugin, custom = FakeScorer(), FakeScorer()
    svc = service(plugin=plugin, custom=custom)
    outcome = await _rerank(svc, model="local")
    assert outcome.model == "local"
    assert custom.calls and not plugin.calls
    assert {c.model for c in custom.calls} == {"local"}
    await _rerank(svc)  # no model: the default
    assert {c.model for c in plugin.calls} == {"words"}


@pytest.mark.parametrize(
    ("query", "n", "status", "param"),
    [
        ("q" * 101, 1, 413, "query"),
        ("q", 11, 413, "documents"),
        ("q", 0, 400, "documents"),
        ("   ", 1, 400, "query"),
    ],
)
def test_request_limits(query: str, n: int, status: int, param: str) -> None:
    svc = service(settings(limits={"max_query_chars": 100, "max_documents": 10}))
    with pytest.raises((ApiError, InvalidInputError)) as info:
        svc.check_request(query, n)
    err = to_api_error(info.value)
    assert (err.status, err.param) == (status, param)


def test_document_length_limit_names_the_document() -> None:
    svc = service(settings(limits={"max_document_chars": 5}))
    svc.check_texts(["12345"])
    with pytest.raises(ApiError) as info:
        svc.check_texts(["ok", "123456"], "texts")
    assert (info.value.status, info.value.param) == (413, "texts[1]")


async def test_fan_out_in_chunks_merges_in_input_order() -> None:
    plugin = FakeScorer()
    svc = service(settings(chunk_size=4), plugin=plugin)
    outcome = await _rerank(svc)
    assert [len(c.texts) for c in plugin.calls] == [4, 4, 2]
    assert [t for c in plugin.calls for t in c.texts] == DOCS
    expected = overlap_scores("dogs and cats", DOCS)
    # Best first; ties keep input order (a stable sort over the merged scores).
    order = sorted(range(len(DOCS)), key=lambda i: -expected[i])
    assert [r.index for r in outcome.results] == order
    assert [r.score for r in outcome.results] == pytest.approx([expected[i] for i in order])
    assert [c["documents"] for c in outcome.chunks] == [4, 4, 2]


async def test_a_large_request_streams_its_chunks_through_a_bounded_window() -> None:
    # Regression: 250 chunks sent at once overflowed the scorers' queue (429) by themselves.
    running = 0
    peak = 0

    async def counted(call: ScoreCall, attempt: int) -> list[float]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        running -= 1
        return overlap_scores(call.query, call.texts)

    plugin = FakeScorer(counted)
    texts = [f"doc {i} {'dogs' if i % 7 == 0 else 'cats'}" for i in range(400)]
    svc = service(settings(chunk_size=4, max_chunks_in_flight=3), plugin=plugin)
    outcome = await _rerank(svc, texts=texts)
    assert len(plugin.calls) == 100
    assert peak == 3
    # Merge order holds: every document's score is its own.
    expected = overlap_scores("dogs and cats", texts)
    by_index = sorted(outcome.results, key=lambda r: r.index)
    assert [r.score for r in by_index] == pytest.approx(expected)


async def test_a_failed_chunk_stops_the_chunks_still_waiting_for_the_window() -> None:
    plugin = FakeScorer()
    texts = [f"doc {i}" for i in range(40)]
    texts[1] = f"a {POISON} document"
    svc = service(settings(chunk_size=2, max_chunks_in_flight=2), plugin=plugin)
    with pytest.raises(ApiError) as info:
        await _rerank(svc, texts=texts)
    assert "documents 0..1 of 40" in info.value.message
    assert len(plugin.calls) < 20  # the waiting chunks were cancelled, never sent


async def test_top_n_applies_after_the_merge() -> None:
    svc = service(settings(chunk_size=3))
    texts = ["x", "x", "x", "x", "dogs and cats", "x", "x"]
    outcome = await _rerank(svc, texts=texts, top_n=1)
    assert [r.index for r in outcome.results] == [4]


async def test_truncation_offsets_name_documents_by_request_index() -> None:
    custom = FakeScorer()
    svc = service(settings(chunk_size=4), custom=custom)
    await _rerank(svc, model="local", truncation=Truncation(max_chunks=2))
    offsets = [c.truncation.index_offset for c in custom.calls if c.truncation is not None]
    assert offsets == [0, 4, 8]
    custom.calls.clear()
    await _rerank(svc, model="local", truncation=Truncation())  # the default is not sent
    assert [c.truncation for c in custom.calls] == [None, None, None]


async def test_failed_chunk_fails_the_request_and_cancels_the_others() -> None:
    async def behaviour(call: ScoreCall, attempt: int) -> list[float]:
        if call.texts[0] == DOCS[0]:
            return await never(call, attempt)  # the first chunk is still running
        return await score_by_overlap(call, attempt)

    plugin = FakeScorer(behaviour)
    svc = service(settings(chunk_size=4), plugin=plugin)
    texts = list(DOCS)
    texts[5] = f"a {POISON} document"
    with pytest.raises(ApiError) as info:
        await _rerank(svc, texts=texts)
    err = info.value
    assert (err.status, err.type) == (500, "backend_error")
    assert "documents 4..7 of 10" in err.message and "poisoned document" in err.message
    assert isinstance(err.__cause__, BackendError)
    assert plugin.calls[0].cancelled  # the slow chunk was not left running


async def test_a_dead_replica_is_retried_once() -> None:
    async def dies_once(call: ScoreCall, attempt: int) -> list[float]:
        if call.texts[0] == DOCS[4] and attempt == 0:
            raise ActorDiedError()
        return overlap_scores(call.query, call.texts)

    local = FakeScorer(dies_once)
    svc = service(settings(chunk_size=4), custom=local)
    outcome = await _rerank(svc, model="local")
    assert len(outcome.results) == len(DOCS)
    assert [len(c.texts) for c in local.calls] == [4, 4, 2, 4]  # one retry, same chunk
    # A model that does not run locally (a plugin, a provider) may have been billed for the
    # lost call: not retried.
    plugin = FakeScorer(dies_once)
    with pytest.raises(ApiError) as info:
        await _rerank(service(settings(chunk_size=4), plugin=plugin))
    assert (info.value.status, info.value.type) == (503, "service_unavailable_error")
    assert [c.texts[0] for c in plugin.calls].count(DOCS[4]) == 1


async def test_a_replica_dying_twice_is_503() -> None:
    async def always_dies(call: ScoreCall, attempt: int) -> list[float]:
        raise ActorDiedError()

    local = FakeScorer(always_dies)
    svc = service(settings(chunk_size=100), custom=local)
    with pytest.raises(ActorDiedError) as info:
        await _rerank(svc, model="local")
    assert len(local.calls) == 2
    err = to_api_error(info.value)
    assert (err.status, err.type) == (503, "service_unavailable_error")


async def test_a_slow_chunk_is_504_and_cancelled() -> None:
    plugin = FakeScorer(never)
    svc = service(settings(chunk_size=100, request_timeout_s=0.05), plugin=plugin)
    with pytest.raises(ApiError) as info:
        await _rerank(svc)
    assert (info.value.status, info.value.type) == (504, "timeout_error")
    assert plugin.calls[0].cancelled


async def test_wrong_number_of_scores_is_a_backend_error() -> None:
    async def short(call: ScoreCall, attempt: int) -> list[float]:
        return [0.5] * (len(call.texts) - 1)

    svc = service(settings(chunk_size=100), plugin=FakeScorer(short))
    with pytest.raises(BackendError):
        await _rerank(svc)


async def test_readiness_and_requests_before_ready() -> None:
    started = asyncio.Event()

    async def ready() -> None:
        if not started.is_set():
            raise RuntimeError("replica still loading")

    plugin, custom = FakeScorer(ready=ready), FakeScorer()
    svc = service(plugin=plugin, custom=custom)
    assert await svc.readiness() == {"plugin": False, "custom": True}
    with pytest.raises(ApiError) as info:
        await _rerank(svc)
    assert (info.value.status, info.value.retry_after_s) == (503, 5.0)
    started.set()
    assert await svc.readiness() == {"plugin": True, "custom": True}
    assert len((await _rerank(svc)).results) == len(DOCS)
