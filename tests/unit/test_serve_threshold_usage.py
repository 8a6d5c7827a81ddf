"""``min_score``, usage and ``return_spans`` on every HTTP route, over fake deployment handles.

The fake replica reports what a local model's replica reports: tokens scored per chunk and the
best window's span per document; the merge over chunks, the threshold and the wire shapes are
the real ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deployments.serve.http_api import build_api
from tests.unit.serve_fakes import FakeScorer, ScoreCall, overlap_scores, service, settings

QUERY = "capital of France"
DOCS = ["Paris is the capital of France", "the cat sat", "France", "capital cities", "capital"]
SCORES = overlap_scores(QUERY, DOCS)
ORDER = sorted(range(len(DOCS)), key=lambda i: -SCORES[i])


def _extras(call: ScoreCall) -> dict[str, Any]:
    # A token per character and a span that differs from the whole text, per document.
    return {"tokens": sum(len(t) + 3 for t in call.texts),
            "spans": [(1, max(len(t) - 1, 1)) for t in call.texts]}


def _span(i: int) -> list[int]:
    return [1, max(len(DOCS[i]) - 1, 1)]


TOKENS = sum(len(t) + 3 for t in DOCS)


@dataclass
class Recorded:
    """The metrics recorder's fake: keeps the token counts it was given."""

    tokens: list[tuple[str, str, int]] = field(default_factory=list)

    def record(self, route: str, model: str, status: int, *, error_type: str | None = None,
               documents: int = 0, latency_s: float | None = None) -> None:
        pass

    def record_tokens(self, model: str, key: str, tokens: int) -> None:
        self.tokens.append((model, key, tokens))


def _client(models: dict[str, Any] | None = None, *, extras: bool = True,
            api_keys: tuple[str, ...] = (), metrics: Recorded | None = None) -> TestClient:
    scorer = FakeScorer(extras=_extras if extras else None)
    svc = service(settings(models, chunk_size=2, api_keys=api_keys),
                  plugin=scorer, custom=scorer)
    return TestClient(build_api(svc, metrics))


@pytest.fixture
def client() -> Iterator[TestClient]:
    with _client() as c:
        yield c


# --- min_score -------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "docs_key", "score_key"), [
    ("/v1/rerank", "documents", "relevance_score"),
    ("/v2/rerank", "documents", "relevance_score"),
    ("/rerank", "texts", "score"),
])
def test_min_score_on_every_route(client: TestClient, path: str, docs_key: str,
                                  score_key: str) -> None:
    cut = 1 / 3  # "capital" alone scores exactly 1/3 and is kept
    r = client.post(path, json={"query": QUERY, docs_key: DOCS, "min_score": cut})
    assert r.status_code == 200, r.text
    results = r.json() if path == "/rerank" else r.json()["results"]
    expected = [i for i in ORDER if SCORES[i] >= cut]
    assert [x["index"] for x in results] == expected and len(expected) < len(DOCS)
    assert all(x[score_key] >= cut for x in results)
    if path != "/rerank":
        r = client.post(path, json={"query": QUERY, docs_key: DOCS, "min_score": cut,
                                    "top_n": 1})
        assert [x["index"] for x in r.json()["results"]] == expected[:1]
    r = client.post(path, json={"query": QUERY, docs_key: DOCS, "min_score": 2.0})
    assert (r.json() if path == "/rerank" else r.json()["results"]) == []


def test_min_score_must_be_a_number(client: TestClient) -> None:
    r = client.post("/v2/rerank", json={"query": QUERY, "documents": DOCS, "min_score": "0.5"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "min_score"


def test_min_score_configured_per_model() -> None:
    models = {"words": {"type": "plugin", "name": "tests.unit.serve_fakes:overlap_scores",
                        "min_score": 0.5},
              "all": {"type": "plugin", "name": "tests.unit.serve_fakes:overlap_scores"}}
    with _client(models) as c:
        body = {"query": QUERY, "documents": DOCS}
        got = c.post("/v2/rerank", json=body).json()["results"]
        assert [x["index"] for x in got] == [i for i in ORDER if SCORES[i] >= 0.5]
        every = c.post("/v2/rerank", json={**body, "model": "all"}).json()["results"]
        assert len(every) == len(DOCS)
        own = c.post("/v2/rerank", json={**body, "min_score": 0.0}).json()["results"]
        assert len(own) == len(DOCS)  # the request's threshold wins
        raw = c.post("/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True}).json()
        assert len(raw) == len(DOCS)  # a probability threshold does not apply to raw scores


# --- usage -----------------------------------------------------------------------------------


def test_usage_in_cohere_meta_and_jina_usage(client: TestClient) -> None:
    r = client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS, "top_n": 1})
    body = r.json()
    assert body["meta"]["billed_units"] == {"search_units": 1}
    assert body["meta"]["tokens"] == {"input_tokens": TOKENS}  # summed over 3 chunks
    assert body["usage"] == {"total_tokens": TOKENS}
    v2 = client.post("/v2/rerank", json={"query": QUERY, "documents": DOCS * 30}).json()
    assert v2["meta"]["billed_units"] == {"search_units": 2}  # 150 documents
    assert v2["meta"]["tokens"] == {"input_tokens": TOKENS * 30}
    assert "usage" not in v2


def test_usage_without_a_token_count() -> None:
    with _client(extras=False) as c:
        body = c.post("/v1/rerank", json={"query": QUERY, "documents": DOCS}).json()
    assert body["meta"]["billed_units"] == {"search_units": 1}
    assert "tokens" not in body["meta"] and "usage" not in body


def test_tokens_counted_per_model_and_key_never_the_key() -> None:
    recorded = Recorded()
    with _client(api_keys=("first-secret", "second-secret"), metrics=recorded) as c:
        ok = c.post("/v2/rerank", json={"query": QUERY, "documents": DOCS},
                    headers={"Authorization": "Bearer second-secret"})
        assert ok.status_code == 200
        c.post("/rerank", json={"query": QUERY, "texts": DOCS[:2]},
               headers={"Authorization": "Bearer first-secret"})
    assert recorded.tokens == [("words", "key1", TOKENS),
                               ("words", "key0", sum(len(t) + 3 for t in DOCS[:2]))]
    recorded = Recorded()
    with _client(metrics=recorded) as c:
        c.post("/v1/rerank", json={"query": QUERY, "documents": DOCS})
    assert recorded.tokens == [("words", "none", TOKENS)]


# --- spans -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "docs_key"), [
    ("/v1/rerank", "documents"), ("/v2/rerank", "documents"), ("/rerank", "texts"),
])
def test_spans_only_when_asked(client: TestClient, path: str, docs_key: str) -> None:
    plain = client.post(path, json={"query": QUERY, docs_key: DOCS}).json()
    results = plain if path == "/rerank" else plain["results"]
    assert all("span" not in x for x in results)
    asked = client.post(path, json={"query": QUERY, docs_key: DOCS, "return_spans": True}).json()
    results = asked if path == "/rerank" else asked["results"]
    # Chunks of 2 documents: each result gets its own document's span back, in input order.
    assert [x["span"] for x in results] == [_span(x["index"]) for x in results]
    assert len(results) == len(DOCS)


def test_no_spans_from_a_model_that_does_not_chunk() -> None:
    with _client(extras=False) as c:
        body = c.post("/v2/rerank", json={"query": QUERY, "documents": DOCS,
                                          "return_spans": True}).json()
    assert all("span" not in x for x in body["results"])
