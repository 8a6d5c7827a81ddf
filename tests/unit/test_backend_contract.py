"""The backend contract: the one truncation check, the batch entry point, the score cache key."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from reranker import InputTooLongError, InvalidInputError, Reranker
from reranker.backends.base import (
    TRUNCATION_FIELDS,
    RerankerBackend,
    ScoreItem,
    SingleItemBackend,
    check_instruction,
    check_truncation,
    check_truncation_field,
)
from reranker.backends.local import LocalCrossEncoderBackend
from reranker.errors import BackendError, RerankerError
from reranker.plugins import PluginBackend
from reranker.testing.textsamples import DOCUMENTS, LONG_DOCUMENT, QUERY
from reranker.types import Truncation

ALL = frozenset(TRUNCATION_FIELDS)
COHERE_LIKE = frozenset({"max_document_tokens"})


# --- the one truncation check -----------------------------------------------------------------

def test_default_truncation_asks_nothing() -> None:
    assert check_truncation("b", frozenset(), None) is None
    assert check_truncation("b", frozenset(), Truncation(field="texts", index_offset=5)) is None


@pytest.mark.parametrize("cut", [
    Truncation(max_document_tokens=3), Truncation(side="left"), Truncation(allow=False),
    Truncation(max_chunks=2),
    Truncation(max_document_tokens=3, side="left", allow=False, max_chunks=1),
])
def test_a_backend_applying_every_field_takes_any_cut(cut: Truncation) -> None:
    assert check_truncation("b", ALL, cut) is cut


@pytest.mark.parametrize(("cut", "param"), [
    (Truncation(max_document_tokens=3, field="texts"), "max_tokens_per_doc"),
    (Truncation(side="left", field="texts"), "texts"),
    (Truncation(allow=False), "documents"),
    (Truncation(max_chunks=2), "documents"),
])
def test_a_backend_applying_nothing_refuses_every_cut(cut: Truncation, param: str) -> None:
    with pytest.raises(InvalidInputError, match="cuts documents itself") as info:
        check_truncation("backend 'jina:m'", frozenset(), cut)
    assert info.value.param == param
    assert "jina:m" in str(info.value)


def test_a_provider_taking_a_token_cap_refuses_the_rest_and_says_what_it_takes() -> None:
    cut = Truncation(max_document_tokens=7)
    assert check_truncation("b", COHERE_LIKE, cut) is cut
    with pytest.raises(InvalidInputError, match=r"takes only max_tokens_per_doc") as info:
        check_truncation("b", COHERE_LIKE, Truncation(max_document_tokens=7, side="left"))
    assert info.value.param == "documents"


def test_request_field_check_names_the_request_field() -> None:
    check_truncation_field("m", ALL, "allow", param="truncate")
    with pytest.raises(InvalidInputError) as info:
        check_truncation_field("m", COHERE_LIKE, "allow", param="truncate")
    assert info.value.param == "truncate"
    assert str(info.value).startswith("truncate does not apply to m")


def test_plugins_refuse_non_default_cuts_through_the_same_check() -> None:
    backend = PluginBackend(lambda q, docs: [1.0] * len(docs), name="p")
    assert isinstance(backend, RerankerBackend)
    assert backend.truncation_fields == frozenset()
    assert backend.score("q", ["a"], Truncation(field="texts")).tolist() == [1.0]
    with pytest.raises(InvalidInputError) as info:
        backend.score("q", ["a"], Truncation(side="left", field="texts"))
    assert info.value.param == "texts"
    with pytest.raises(InvalidInputError) as info:
        asyncio.run(backend.ascore("q", ["a"], Truncation(max_document_tokens=2)))
    assert info.value.param == "max_tokens_per_doc"
    with pytest.raises(InvalidInputError, match="max_tokens_per_doc"):
        Reranker(backend=backend).rerank("q", ["a"], max_tokens_per_doc=2)


# --- the one instruction check ----------------------------------------------------------------

def test_instruction_check_passes_none_and_refuses_blank_or_untaken() -> None:
    assert check_instruction("b", False, None) is None
    assert check_instruction("b", True, "find fish") == "find fish"
    for bad in ("", "  ", 3, b"x"):
        with pytest.raises(InvalidInputError) as info:
            check_instruction("b", True, bad)
        assert info.value.param == "instruction"
    with pytest.raises(InvalidInputError, match="does not apply to backend 'x'") as info:
        check_instruction("backend 'x'", False, "find fish")
    assert info.value.param == "instruction"


def test_every_non_decoder_backend_declares_and_refuses_instructions(
    bert_model: Path,
) -> None:
    plugin = PluginBackend(lambda q, docs: [1.0] * len(docs), name="p")
    local = Reranker({"type": "custom", "model_id": str(bert_model)}).backend
    for backend in (plugin, local):
        assert backend.takes_instruction is False
        with pytest.raises(InvalidInputError) as info:
            backend.score("q", ["a"], None, "find fish")
        assert info.value.param == "instruction"
        with pytest.raises(InvalidInputError) as info:
            asyncio.run(backend.ascore("q", ["a"], None, "find fish"))
        assert info.value.param == "instruction"
        with pytest.raises(InvalidInputError) as info:
            Reranker(backend=backend).rerank("q", ["a"], instruction="find fish")
        assert info.value.param == "instruction"
        out = backend.score_batch([ScoreItem("q", ["a"]), ScoreItem("q", ["a"], None, "x")])
        assert isinstance(out[0], np.ndarray)
        assert isinstance(out[1], InvalidInputError) and out[1].param == "instruction"
    local.close()


# --- the batch entry point: backends that score one item ----------------------------------------

class _Echo(SingleItemBackend):
    """Scores a document by its length; fails on a query of "boom" (a plain exception)."""

    name = "echo"
    max_length = None
    scores_are_probabilities = False

    def __init__(self) -> None:
        self.in_flight = 0
        self.most_in_flight = 0

    def score(self, query: str, documents: Sequence[str],
              truncation: Truncation | None = None) -> np.ndarray:
        return np.array([len(d) for d in documents], dtype=np.float32)

    async def ascore(self, query: str, documents: Sequence[str],
                     truncation: Truncation | None = None) -> np.ndarray:
        check_truncation(self.name, self.truncation_fields, truncation)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        if query == "boom":
            raise ValueError("exploded")
        return self.score(query, documents)

    def close(self) -> None:
        pass


def test_single_item_backends_score_items_concurrently_and_fail_alone() -> None:
    backend = _Echo()
    items = [ScoreItem("q", ["a", "bbb"]), ScoreItem("boom", ["a"]),
             ScoreItem("q", ["cc"], Truncation(side="left")), ScoreItem("q", ["dddd"])]
    out = asyncio.run(backend.ascore_batch(items))
    assert out[0].tolist() == [1.0, 3.0]  # type: ignore[union-attr]
    assert isinstance(out[1], BackendError) and "ValueError: exploded" in str(out[1])
    assert isinstance(out[2], InvalidInputError) and out[2].param == "documents"
    # A SingleItemBackend whose ascore predates instructions still serves batches; an item
    # with an instruction fails alone.
    with_instruction = asyncio.run(backend.ascore_batch([ScoreItem("q", ["a"], None, "x")]))
    assert isinstance(with_instruction[0], InvalidInputError)
    assert with_instruction[0].param == "instruction"
    assert out[3].tolist() == [4.0]  # type: ignore[union-attr]
    assert backend.most_in_flight == 3  # the refused item never got to score
    sync = backend.score_batch(items)
    assert [type(r) for r in sync] == [type(r) for r in out]


def test_sync_batch_entry_point_works_inside_a_running_loop() -> None:
    async def main() -> list[np.ndarray | RerankerError]:
        return _Echo().score_batch([ScoreItem("q", ["abc"])])

    assert asyncio.run(main())[0].tolist() == [3.0]  # type: ignore[union-attr]


# --- the batch entry point: the local ONNX backend ------------------------------------------------

class _CountingRuns:
    """Wraps the backend's ONNX runner to count the passes (the runner itself runs as is)."""

    def __init__(self, backend: LocalCrossEncoderBackend) -> None:
        self.runs: list[int] = []
        inner = backend.model.run

        def run(ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]]) -> np.ndarray:
            self.runs.append(len(ids))
            return inner(ids, type_ids)

        backend.model.run = run  # type: ignore[method-assign]


@pytest.fixture
def local(bert_model: Path) -> LocalCrossEncoderBackend:
    rr = Reranker({"type": "custom", "model_id": str(bert_model), "long_documents": "chunk",
                   "max_length": 64})
    assert isinstance(rr.backend, LocalCrossEncoderBackend)
    return rr.backend


def test_local_batch_is_one_onnx_pass_equal_to_scoring_each_item(
    local: LocalCrossEncoderBackend,
) -> None:
    items = [ScoreItem(QUERY, [LONG_DOCUMENT, *DOCUMENTS[:2]]),
             ScoreItem("another query", DOCUMENTS[2:5]),
             ScoreItem(QUERY, [LONG_DOCUMENT], Truncation(max_document_tokens=4))]
    alone = [local.score(i.query, i.documents, i.truncation) for i in items]
    counter = _CountingRuns(local)
    out = local.score_batch(items)
    windows = sum(len(local.encode(i.query, i.documents, i.truncation).owner) for i in items)
    assert counter.runs == [windows]  # every item's windows in one pass
    assert windows > sum(len(i.documents) for i in items)  # chunking made windows to fold back
    for got, want in zip(out, alone, strict=True):
        assert isinstance(got, np.ndarray) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-5)
    async_out = asyncio.run(local.ascore_batch(items))
    for got, want in zip(async_out, alone, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)  # type: ignore[arg-type]


def test_local_batch_fails_only_the_item_with_invalid_input(
    local: LocalCrossEncoderBackend,
) -> None:
    items = [ScoreItem(QUERY, DOCUMENTS[:2]),
             ScoreItem(QUERY, [DOCUMENTS[0], LONG_DOCUMENT],
                       Truncation(allow=False, max_chunks=1, field="texts")),
             ScoreItem(QUERY, DOCUMENTS[2:4])]
    out = local.score_batch(items)
    assert isinstance(out[1], InputTooLongError)
    assert out[1].param == "texts" and "texts[1]" in str(out[1])
    np.testing.assert_allclose(out[0], local.score(QUERY, DOCUMENTS[:2]), atol=1e-5)  # type: ignore[arg-type]
    np.testing.assert_allclose(out[2], local.score(QUERY, DOCUMENTS[2:4]), atol=1e-5)  # type: ignore[arg-type]


# --- the score cache ----------------------------------------------------------------------------

@pytest.fixture
def cached(bert_model: Path) -> LocalCrossEncoderBackend:
    rr = Reranker({"type": "custom", "model_id": str(bert_model), "score_cache_size": 100,
                   "max_length": 64})
    assert isinstance(rr.backend, LocalCrossEncoderBackend)
    return rr.backend


def test_cached_score_never_answers_a_request_that_refuses_cuts(
    cached: LocalCrossEncoderBackend,
) -> None:
    """Regression: the key omitted ``allow``, so a score of a cut pair came back where
    ``truncate: false`` must fail with 413."""
    docs = [DOCUMENTS[0], LONG_DOCUMENT]
    for cut in (Truncation(side="left"), Truncation(max_document_tokens=500)):
        refuse = Truncation(side=cut.side, max_document_tokens=cut.max_document_tokens,
                            allow=False)
        cached.score(QUERY, docs, cut)  # both pairs now cached, the long one cut
        with pytest.raises(InputTooLongError):
            cached.score(QUERY, docs, refuse)
        out = cached.score_batch([ScoreItem(QUERY, docs, refuse)])
        assert isinstance(out[0], InputTooLongError)
    # A pair that fits is scored once per truncation, then served from the cache.
    fits = cached.score(QUERY, docs[:1], Truncation(allow=False))
    np.testing.assert_allclose(fits, cached.score(QUERY, docs[:1]), atol=1e-6)


def test_refused_pair_is_named_by_its_request_position_when_others_are_cached(
    cached: LocalCrossEncoderBackend,
) -> None:
    refuse = Truncation(allow=False, field="texts", index_offset=3)
    cached.score(QUERY, DOCUMENTS[:2], refuse)  # cached: only the long document is left
    for call in (lambda: cached.score(QUERY, [*DOCUMENTS[:2], LONG_DOCUMENT], refuse),
                 lambda: _raise(cached.score_batch(
                     [ScoreItem(QUERY, [*DOCUMENTS[:2], LONG_DOCUMENT], refuse)])[0])):
        with pytest.raises(InputTooLongError) as info:
            call()
        assert str(info.value).startswith("texts[5] ")


def _raise(result: object) -> None:
    if isinstance(result, Exception):
        raise result


def test_cache_key_covers_every_option_that_changes_a_score() -> None:
    variants = {Truncation().cache_variant}
    for cut in (Truncation(max_document_tokens=3), Truncation(side="left"),
                Truncation(allow=False), Truncation(max_chunks=2)):
        variants.add(cut.cache_variant)
    assert len(variants) == 5
    # The error wording fields do not change a score: they share a key.
    assert Truncation(field="texts", index_offset=9).cache_variant == Truncation().cache_variant


def test_score_cache_serves_the_batch_entry_point(cached: LocalCrossEncoderBackend) -> None:
    assert cached.score_cache is not None
    items = [ScoreItem(QUERY, DOCUMENTS[:3]), ScoreItem("other", DOCUMENTS[:2])]
    first = cached.score_batch(items)
    misses = cached.score_cache.stats.misses
    assert misses == 5 and cached.score_cache.stats.hits == 0
    counter = _CountingRuns(cached)
    again = cached.score_batch(items)
    assert counter.runs == []  # nothing left to run
    assert cached.score_cache.stats.hits == 5
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)  # type: ignore[arg-type]


def test_a_run_failure_fails_every_item_with_the_backend_named(
    local: LocalCrossEncoderBackend,
) -> None:
    def broken(ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]]) -> np.ndarray:
        raise RuntimeError("onnxruntime fell over")

    local.model.run = broken  # type: ignore[method-assign]
    out = local.score_batch([ScoreItem(QUERY, DOCUMENTS[:2]),
                             ScoreItem(QUERY, DOCUMENTS[:1], Truncation(allow=False)),
                             ScoreItem("x", DOCUMENTS[:1])])
    assert isinstance(out[0], BackendError) and "RuntimeError: onnxruntime fell over" in str(out[0])
    assert out[2] is out[0]
    assert out[1] is out[0]
    assert "custom:" in str(out[0])
