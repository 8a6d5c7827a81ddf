"""Score post-processing: activation, stable ranking, top_k, validation."""

from __future__ import annotations

import numpy as np
import pytest

from reranker.errors import BackendError, InvalidInputError
from reranker.scoring import build_results, check_scores, check_top_k, rank, sigmoid


def test_sigmoid_matches_definition_and_does_not_saturate() -> None:
    x = np.array([-50.0, -1.0, 0.0, 2.5, 30.0])
    np.testing.assert_allclose(sigmoid(x), 1.0 / (1.0 + np.exp(-x)), rtol=1e-12)
    # In float16 both would round to 1.0 and tie; float64 keeps them apart.
    strong = sigmoid(np.array([12.0, 13.0], dtype=np.float32))
    assert strong[1] > strong[0]
    assert np.float16(1 / (1 + np.exp(-12))) == np.float16(1 / (1 + np.exp(-13)))


def test_softmax_of_two_logits_equals_sigmoid_of_log_odds() -> None:
    logits = np.array([[0.3, -1.2], [2.0, 5.0], [-3.0, -3.0]])
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(sigmoid(logits[:, 1] - logits[:, 0]), softmax[:, 1], rtol=1e-12)


def test_rank_is_stable_for_ties() -> None:
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1])
    assert rank(scores).tolist() == [1, 3, 0, 2, 4]
    assert rank(scores, 2).tolist() == [1, 3]


def test_build_results_probabilities_raw_and_documents() -> None:
    docs = ["a", {"text": "b", "id": 7}, "c"]
    raw = np.array([0.0, 3.0, -2.0], dtype=np.float32)
    res = build_results(raw, docs, scores_are_probabilities=False, top_k=2)
    assert [r.index for r in res] == [1, 0]
    assert res[0].document == {"text": "b", "id": 7}
    assert res[0].score == pytest.approx(1 / (1 + np.exp(-3.0)))
    raw_res = build_results(raw, docs, scores_are_probabilities=False, raw_scores=True)
    assert [r.score for r in raw_res] == [3.0, 0.0, -2.0]
    no_docs = build_results(raw, docs, scores_are_probabilities=False, return_documents=False)
    assert all(r.document is None for r in no_docs)
    probs = build_results(np.array([0.2, 0.7]), ["x", "y"], scores_are_probabilities=True)
    assert [(r.index, r.score) for r in probs] == [(1, 0.7), (0, 0.2)]


def test_top_k_larger_than_set_returns_all() -> None:
    res = build_results(np.array([1.0, 2.0]), ["a", "b"], scores_are_probabilities=True, top_k=10)
    assert [r.index for r in res] == [1, 0]


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True])
def test_bad_top_k(bad: object) -> None:
    with pytest.raises(InvalidInputError) as info:
        check_top_k(bad)
    assert info.value.param == "top_k"


def test_check_top_k_accepts_none_and_ints() -> None:
    assert check_top_k(None) is None
    assert check_top_k(np.int64(3)) == 3


@pytest.mark.parametrize(
    ("scores", "match"),
    [
        ([1.0, 2.0], "2 scores for 3"),
        ([1.0, float("nan"), 2.0], "non-finite"),
        ([1.0, float("inf"), 2.0], "non-finite"),
        (["a", "b", "c"], "non-numeric"),
        ([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], "6 scores for 3"),
    ],
)
def test_check_scores_rejects_bad_output(scores: object, match: str) -> None:
    with pytest.raises(BackendError, match=match):
        check_scores(scores, 3, source="test")


def test_check_scores_accepts_column_vector() -> None:
    assert check_scores([[1.0], [2.0]], 2, source="t").tolist() == [1.0, 2.0]
