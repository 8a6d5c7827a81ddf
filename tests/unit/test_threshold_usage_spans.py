"""Relevance threshold (``min_score``), usage and best-passage spans through the library.

Token counts and spans are checked against ``transformers``' own tokenizer of the model (ids and
character offsets), scores against the numpy reference forward pass: independent of our
tokenization and ONNX path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reranker import InvalidInputError, Reranker, RerankResults, Usage
from reranker.scoring import build_results
from reranker.testing.families.encoder_reference import reference_logits
from reranker.testing.textsamples import DOCUMENTS, LONG_DOCUMENT, QUERY

TOL = 1e-4


def _tokenizer(folder: Path):  # type: ignore[no-untyped-def]
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(folder))


# --- min_score -------------------------------------------------------------------------------


def test_build_results_min_score_with_top_k_keeps_order_and_ties() -> None:
    raw = np.array([0.2, 0.9, 0.5, 0.9, 0.1])
    kept = build_results(raw, None, scores_are_probabilities=True, min_score=0.5)
    assert [(r.index, r.score) for r in kept] == [(1, 0.9), (3, 0.9), (2, 0.5)]  # >= keeps 0.5
    top = build_results(raw, None, scores_are_probabilities=True, min_score=0.5, top_k=2)
    assert [r.index for r in top] == [1, 3]
    # top_k larger than what passes: only those at or above the threshold.
    assert [r.index for r in build_results(raw, None, scores_are_probabilities=True,
                                           min_score=0.6, top_k=4)] == [1, 3]
    assert build_results(raw, None, scores_are_probabilities=True, min_score=0.95) == []


def test_min_score_in_the_library(bert_model: Path) -> None:
    rr = Reranker(str(bert_model))
    everything = rr.rerank(QUERY, DOCUMENTS)
    scores = sorted(r.score for r in everything)
    cut = scores[len(scores) // 2]  # a real score: results at exactly the cut are kept
    kept = rr.rerank(QUERY, DOCUMENTS, min_score=cut)
    assert [r.index for r in kept] == [r.index for r in everything if r.score >= cut]
    assert 0 < len(kept) < len(everything)
    assert [r.index for r in rr.rerank(QUERY, DOCUMENTS, min_score=cut, top_k=1)] == [
        everything[0].index]
    assert rr.rerank(QUERY, DOCUMENTS, min_score=1.0 + 1e-9) == []
    # On raw scores the threshold is a logit: a negative one keeps what a sigmoid of 0.5 cuts.
    raw = rr.rerank(QUERY, DOCUMENTS, raw_scores=True, min_score=0.0)
    assert [r.index for r in raw] == [r.index for r in everything if r.score >= 0.5]


def test_min_score_configured_per_model(bert_model: Path) -> None:
    plain = Reranker(str(bert_model)).rerank(QUERY, DOCUMENTS)
    cut = sorted(r.score for r in plain)[len(plain) // 2]
    rr = Reranker({"type": "custom", "model_id": str(bert_model), "min_score": cut})
    assert [r.index for r in rr.rerank(QUERY, DOCUMENTS)] == [
        r.index for r in plain if r.score >= cut]
    # A call's own threshold wins; the configured probability is not applied to raw logits.
    assert len(rr.rerank(QUERY, DOCUMENTS, min_score=0.0)) == len(plain)
    assert len(rr.rerank(QUERY, DOCUMENTS, raw_scores=True)) == len(plain)


@pytest.mark.parametrize("bad", ["0.5", True, float("nan"), float("inf")])
def test_min_score_refused(bert_model: Path, bad: object) -> None:
    with pytest.raises(InvalidInputError) as err:
        Reranker(str(bert_model)).rerank(QUERY, DOCUMENTS, min_score=bad)  # type: ignore[arg-type]
    assert err.value.param == "min_score"


def test_configured_min_score_is_a_probability() -> None:
    from pydantic import ValidationError

    from reranker import ConfigError, parse_backend_config

    with pytest.raises((ValidationError, ConfigError)):
        parse_backend_config({"type": "preset", "name": "fast", "min_score": 1.5})


# --- usage -----------------------------------------------------------------------------------


def test_usage_counts_search_units_and_scored_tokens(bert_model: Path) -> None:
    tok = _tokenizer(bert_model)
    max_length = 64
    rr = Reranker({"type": "custom", "model_id": str(bert_model), "max_length": max_length})
    docs = [*DOCUMENTS, LONG_DOCUMENT]
    results = rr.rerank(QUERY, docs, top_k=1)
    assert isinstance(results, RerankResults) and isinstance(results, list)
    # The batch form: a single call drops an empty document (see test_local_backend).
    expected = sum(len(tok([QUERY], [d], truncation="only_second", max_length=max_length)
                       ["input_ids"][0]) for d in docs)
    assert results.usage == Usage(search_units=1, tokens=expected)
    many = rr.rerank(QUERY, ["a short text"] * 201)
    assert many.usage is not None and many.usage.search_units == 3  # 100 + 100 + 1


def test_usage_of_cached_pairs_is_zero_tokens(bert_model: Path) -> None:
    rr = Reranker({"type": "custom", "model_id": str(bert_model), "score_cache_size": 100})
    first = rr.rerank(QUERY, DOCUMENTS)
    again = rr.rerank(QUERY, DOCUMENTS)
    assert first.usage is not None and first.usage.tokens and first.usage.tokens > 0
    assert again.usage == Usage(search_units=1, tokens=0)


def test_usage_unknown_for_a_backend_that_does_not_count() -> None:
    rr = Reranker({"type": "plugin", "name": "tests.unit.serve_fakes:overlap_scores"})
    out = rr.rerank("capital of France", ["France", "cats"])
    assert out.usage == Usage(search_units=1, tokens=None)
    assert [r.index for r in out] == [0, 1] and all(r.span is None for r in out)


# --- best-passage spans ----------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["bert1", "xlmr2"])
def test_span_is_the_best_window_of_a_long_document(model_dirs: dict[str, Path], variant: str
                                                   ) -> None:
    folder = model_dirs[variant]
    max_length, overlap = 48, 8
    rr = Reranker({"type": "custom", "model_id": str(folder), "max_length": max_length,
                   "long_documents": "chunk", "chunk_overlap": overlap, "max_chunks_per_doc": 500})
    docs = [LONG_DOCUMENT, DOCUMENTS[0], LONG_DOCUMENT[::-1]]
    got = {r.index: r for r in rr.rerank(QUERY, docs, raw_scores=True)}

    # Independently: transformers' ids and offsets, windows cut by hand, the numpy forward pass.
    tok = _tokenizer(folder)
    q_ids = tok(QUERY, add_special_tokens=False)["input_ids"]
    specials = len(tok(QUERY, "x")["input_ids"]) - len(q_ids) - 1
    room = max_length - specials - len(q_ids)
    for i, doc in enumerate(docs):
        enc = tok(doc, add_special_tokens=False, return_offsets_mapping=True)
        d_ids, offsets = enc["input_ids"], enc["offset_mapping"]
        best_score, best_span = -np.inf, None
        for s in range(0, max(len(d_ids) - overlap, 1), room - overlap):
            window = d_ids[s : s + room]
            cls, sep = tok.cls_token_id, tok.sep_token_id
            if "token_type_ids" in tok.model_input_names:
                ids = [cls, *q_ids, sep, *window, sep]
                types = np.array([[0] * (len(q_ids) + 2) + [1] * (len(window) + 1)])
            else:
                ids = [cls, *q_ids, sep, sep, *window, sep]
                types = None
            arr = np.array([ids])
            logits = reference_logits(folder, arr, np.ones_like(arr), types)[0]
            score = logits[0] if len(logits) == 1 else logits[1] - logits[0]
            if score > best_score + TOL:
                best_score = score
                best_span = (offsets[s][0], offsets[min(s + room, len(d_ids)) - 1][1])
        if len(d_ids) <= room:
            best_span = (0, len(doc))
        assert got[i].score == pytest.approx(best_score, abs=TOL), f"document {i}"
        assert got[i].span == best_span, f"document {i}"
    long_span = got[0].span
    assert long_span is not None and 0 < long_span[1] - long_span[0] < len(LONG_DOCUMENT)


def test_known_passage_is_the_best_window(bert_model: Path) -> None:
    """A long document of passages that each fill one window exactly: the passage that scores
    best on its own is the document's best window, and its span is that passage."""
    max_length = 64
    rr = Reranker({"type": "custom", "model_id": str(bert_model), "max_length": max_length,
                   "long_documents": "chunk", "chunk_overlap": 0, "max_chunks_per_doc": 50})
    room = max_length - len(rr.backend.encode(QUERY, [""]).ids[0])
    # Words that are one token each, so a passage of `room` words is exactly one window.
    words = sorted({w for d in DOCUMENTS for w in d.lower().split()
                    if w.isalpha() and len(rr.backend.encode("", [w]).ids[0]) ==
                    len(rr.backend.encode("", [""]).ids[0]) + 1})
    assert len(words) >= 5
    passages = [" ".join(((words[j:] + words[:j]) * room)[:room]) for j in range(6)]
    alone = rr.rerank(QUERY, passages)
    assert len({round(r.score, 6) for r in alone}) == len(passages)  # one clear best
    best = passages[alone[0].index]
    order = [p for p in passages if p != best]
    doc = " ".join(order[:3] + [best] + order[3:])
    assert len(rr.backend.encode(QUERY, [doc]).ids) == len(passages)  # windows = passages

    [result] = rr.rerank(QUERY, [doc])
    start = doc.index(best)
    assert result.span == (start, start + len(best))
    assert doc[slice(*result.span)] == best
    assert result.score == pytest.approx(alone[0].score, abs=1e-6)


def test_no_span_without_chunking(bert_model: Path) -> None:
    out = Reranker(str(bert_model)).rerank(QUERY, [LONG_DOCUMENT, DOCUMENTS[0]])
    assert all(r.span is None for r in out)
    assert "span" not in out[0].model_dump(exclude_none=True)
