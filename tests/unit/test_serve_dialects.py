"""The three API dialects over fake deployment handles, through FastAPI's TestClient.

Each dialect's request becomes one RerankService call and its response has the provider's
shape; the app's middleware and error handling are the real ones. No Ray is started.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deployments.serve.http_api import build_api
from tests.unit.serve_fakes import FakeScorer, overlap_scores, service, settings

QUERY = "capital of France"
DOCS = ["Paris is the capital of France", "the cat sat", "France", "capital cities"]
SCORES = overlap_scores(QUERY, DOCS)
ORDER = sorted(range(len(DOCS)), key=lambda i: -SCORES[i])


@pytest.fixture
def custom() -> FakeScorer:
    return FakeScorer()


@pytest.fixture
def client(custom: FakeScorer) -> Iterator[TestClient]:
    svc = service(settings(chunk_size=3, debug=True, tei_auto_truncate=False), custom=custom)
    with TestClient(build_api(svc)) as c:
        yield c


def _error(response: Any, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param"}
    assert body["error"]["type"] == kind
    return dict(body["error"])


def test_cohere_v1_shape(client: TestClient) -> None:
    r = client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS, "top_n": 2,
                                        "return_documents": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id", "model", "results", "meta"} and body["model"] == "words"
    assert body["meta"]["api_version"] == {"version": "1"}
    assert [x["index"] for x in body["results"]] == ORDER[:2]
    assert [x["relevance_score"] for x in body["results"]] == pytest.approx(
        [SCORES[i] for i in ORDER[:2]])
    assert [x["document"] for x in body["results"]] == [{"text": DOCS[i]} for i in ORDER[:2]]


def test_cohere_v1_objects_rank_fields_and_chunks(client: TestClient, custom: FakeScorer
                                                  ) -> None:
    docs = [{"title": "France", "id": 1}, {"title": "cats", "id": 2}]
    r = client.post("/v1/rerank", json={"model": "local", "query": "France", "documents": docs,
                                        "rank_fields": ["title"], "return_documents": True,
                                        "max_chunks_per_doc": 2})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results[0] == {"index": 0, "relevance_score": 1.0, "document": docs[0]}
    assert [c.texts for c in custom.calls] == [["title: France", "title: cats"]]
    assert custom.calls[0].truncation is not None
    assert custom.calls[0].truncation.max_chunks == 2


def test_cohere_v2_shape(client: TestClient, custom: FakeScorer) -> None:
    r = client.post("/v2/rerank", json={"model": "local", "query": QUERY, "documents": DOCS,
                                        "top_n": 10, "max_tokens_per_doc": 7,
                                        "return_documents": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id", "results", "meta"}
    assert body["meta"]["api_version"] == {"version": "2"}
    assert [x["index"] for x in body["results"]] == ORDER  # top_n above the set: all
    assert body["results"][0]["document"] == {"text": DOCS[ORDER[0]]}
    assert {c.truncation.max_document_tokens for c in custom.calls if c.truncation} == {7}
    without = client.post("/v2/rerank", json={"query": QUERY, "documents": DOCS}).json()
    assert all("document" not in x for x in without["results"])


def test_tei_bare_list_raw_scores_and_truncation(client: TestClient, custom: FakeScorer
                                                 ) -> None:
    r = client.post("/rerank", json={"model": "local", "query": QUERY, "texts": DOCS,
                                     "return_text": True, "truncation_direction": "Left"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["index"] for x in body] == ORDER
    assert body[0] == {"index": ORDER[0], "score": pytest.approx(SCORES[ORDER[0]]),
                       "text": DOCS[ORDER[0]]}
    cut = custom.calls[0].truncation
    assert cut is not None and (cut.side, cut.allow, cut.field) == ("left", False, "texts")
    raw = client.post("/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True})
    assert [x["score"] for x in raw.json()] == pytest.approx(sorted(SCORES, reverse=True))
    assert all("text" not in x for x in raw.json())


def test_tei_truncate_default_follows_the_setting(custom: FakeScorer) -> None:
    svc = service(settings(tei_auto_truncate=True), custom=custom)
    with TestClient(build_api(svc)) as c:
        assert c.post("/rerank", json={"model": "local", "query": "q", "texts": ["a"]}
                      ).status_code == 200
    assert custom.calls[0].truncation is None  # allow=True, right side: the default cut


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/rerank", {"query": "q", "texts": ["a"], "truncation_direction": "left"},
         "truncation_direction"),
        ("/rerank", {"query": "q", "texts": ["a"], "truncate": False}, "truncate"),
        ("/v2/rerank", {"query": "q", "documents": ["a"], "max_tokens_per_doc": 3},
         "max_tokens_per_doc"),
        ("/v1/rerank", {"query": "q", "documents": ["a"], "max_chunks_per_doc": 2},
         "max_chunks_per_doc"),
    ],
)
def test_cuts_are_refused_for_models_that_cut_themselves(client: TestClient, path: str,
                                                         body: dict[str, Any], param: str
                                                         ) -> None:
    assert _error(client.post(path, json=body), 400, "invalid_request_error")["param"] == param


def test_debug_meta_only_when_asked(client: TestClient) -> None:
    body = {"query": QUERY, "documents": DOCS}
    plain = client.post("/v1/rerank", json=body).json()["meta"]
    assert "debug" not in plain
    debug = client.post("/v1/rerank", json=body, headers={"x-reranker-debug": "1"})
    chunks = debug.json()["meta"]["debug"]["chunks"]
    assert [c["documents"] for c in chunks] == [3, 1]
    assert {c["replica"] for c in chunks} == {"fake-replica"}


def test_models_health_and_ready(client: TestClient) -> None:
    models = client.get("/v1/models").json()
    assert models["default_model"] == "words"
    assert [(m["id"], m["variant"], m["default"]) for m in models["data"]] == [
        ("words", "plugin", True), ("local", "custom", False)]
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready",
                                           "variants": {"plugin": True, "custom": True}}


def test_not_ready_is_503_with_variants() -> None:
    async def loading() -> None:
        raise RuntimeError("still loading")

    svc = service(custom=FakeScorer(ready=loading))
    with TestClient(build_api(svc)) as c:
        r = c.get("/ready")
        assert r.status_code == 503
        err = r.json()["error"]
        assert err["type"] == "service_unavailable_error"
        assert "custom" in err["message"] and r.headers["retry-after"] == "5"
        assert r.json()["variants"] == {"plugin": True, "custom": False}
        _error(c.post("/v2/rerank", json={"model": "local", "query": "q", "documents": ["a"]}),
               503, "service_unavailable_error")


# --- POST /rerank with documents: the Infinity and vLLM shape -----------------------------------


def test_rerank_with_documents_answers_the_vllm_shape(client: TestClient, custom: FakeScorer
                                                     ) -> None:
    # Regression: Infinity/vLLM clients (litellm's infinity/, hosted_vllm/, together_ai/) send
    # documents to /rerank and got "texts: Field required".
    r = client.post("/rerank", json={"model": "local", "query": QUERY, "documents": DOCS,
                                     "top_n": 2, "return_documents": True,
                                     "max_tokens_per_doc": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id", "object", "model", "created", "results"}
    assert body["object"] == "rerank" and body["model"] == "local"
    assert [x["index"] for x in body["results"]] == ORDER[:2]
    assert [x["relevance_score"] for x in body["results"]] == pytest.approx(
        [SCORES[i] for i in ORDER[:2]])
    assert [x["document"] for x in body["results"]] == [{"text": DOCS[i]} for i in ORDER[:2]]
    assert custom.calls[0].texts == DOCS[:3]  # chunk_size 3: the first chunk
    assert {c.truncation.max_document_tokens for c in custom.calls if c.truncation} == {5}
    plain = client.post("/rerank", json={"query": QUERY, "documents": DOCS}).json()
    assert [x["index"] for x in plain["results"]] == ORDER
    assert all(set(x) == {"index", "relevance_score"} for x in plain["results"])


def test_infinity_route_answers_documents_as_strings(client: TestClient) -> None:
    r = client.post("/infinity/rerank", json={"query": QUERY, "documents": DOCS, "top_n": 1,
                                              "return_documents": True})
    assert r.status_code == 200, r.text
    assert r.json()["results"] == [{"index": ORDER[0], "relevance_score": pytest.approx(
        SCORES[ORDER[0]]), "document": DOCS[ORDER[0]]}]
    err = _error(client.post("/infinity/rerank", json={"query": "q", "texts": ["a"]}), 422,
                 "invalid_request_error")
    assert err["param"] == "documents"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"query": "q"}, 422, "texts"),  # neither shape: TEI's field is the one named
        ({"query": "q", "documents": ["a"], "top_n": "3"}, 422, "top_n"),
        ({"query": "q", "documents": ["a"], "top_n": 0}, 422, "top_n"),
        ({"query": "q", "documents": [1]}, 422, "documents.0"),
        ({"query": "", "documents": ["a"]}, 400, "query"),
        ({"query": "q", "documents": []}, 400, "documents"),
        ({"model": "nope", "query": "q", "documents": ["a"]}, 404, None),
    ],
)
def test_rerank_with_documents_errors(client: TestClient, body: dict[str, Any], status: int,
                                      param: str | None) -> None:
    kind = "not_found_error" if status == 404 else "invalid_request_error"
    err = _error(client.post("/rerank", json=body), status, kind)
    if param is not None:
        assert err["param"] is not None and err["param"].startswith(param), err


def test_rerank_body_that_is_not_an_object(client: TestClient) -> None:
    _error(client.post("/rerank", content=b"{"), 400, "invalid_request_error")
    _error(client.post("/rerank", json=["q", "a"]), 422, "invalid_request_error")
