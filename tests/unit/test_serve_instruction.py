"""The ``instruction`` extension field on all three routes, over fake deployment handles.

It travels from each dialect's body through ``RerankService.rerank`` to every fan-out chunk;
a model whose config takes no instruction is refused in the ingress (400 naming the field)
before any chunk is sent, and a ``custom`` model, known only once loaded, is refused by its
replica's backend, whose error comes back as the same 400.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deployments.serve.http_api import build_api
from reranker.backends import ScoreItem
from reranker.errors import InvalidInputError
from reranker.plugins import PluginBackend
from tests.unit.serve_fakes import FakeScorer, ScoreCall, overlap_scores, service, settings

QUERY = "capital of France"
DOCS = ["Paris is the capital of France", "the cat sat", "France", "capital cities"]
INSTRUCTION = "Given a question about Europe, retrieve passages that answer it"
MODELS = {
    "qwen": {"type": "preset", "name": "instruct"},
    "words": {"type": "plugin", "name": "tests.unit.serve_fakes:overlap_scores"},
    "encoder": {"type": "preset", "name": "fast"},
    "repo": {"type": "custom", "model_id": "/models/tiny"},
}
ROUTES = {
    "/v1/rerank": {"query": QUERY, "documents": DOCS},
    "/v2/rerank": {"query": QUERY, "documents": DOCS},
    "/rerank": {"query": QUERY, "texts": DOCS},
}


async def _like_a_replica(call: ScoreCall, attempt: int) -> list[float]:
    """What a replica does with the call: the backend's batch entry point (a real plugin
    backend here, which takes no instruction), its error raised as the scorer's reply is."""
    backend = PluginBackend(overlap_scores, name="words")
    [result] = await backend.ascore_batch(
        [ScoreItem(call.query, call.texts, call.truncation, call.instruction)])
    if isinstance(result, Exception):
        raise pickle.loads(pickle.dumps(result))  # it crossed Ray
    return [float(x) for x in result]


@pytest.fixture
def handles() -> dict[str, FakeScorer]:
    return {"preset": FakeScorer(), "plugin": FakeScorer(),
            "custom": FakeScorer(_like_a_replica)}


@pytest.fixture
def client(handles: dict[str, FakeScorer]) -> Iterator[TestClient]:
    svc = service(settings(MODELS, chunk_size=3), **handles)
    with TestClient(build_api(svc)) as c:
        yield c


def _refused(response: Any, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == "instruction"
    return dict(error)


@pytest.mark.parametrize("route", list(ROUTES))
def test_instruction_reaches_every_chunk(client: TestClient, handles: dict[str, FakeScorer],
                                         route: str) -> None:
    r = client.post(route, json={**ROUTES[route], "model": "qwen", "instruction": INSTRUCTION})
    assert r.status_code == 200, r.text
    calls = handles["preset"].calls
    assert [len(c.texts) for c in calls] == [3, 1]  # fanned out in two chunks
    assert [c.instruction for c in calls] == [INSTRUCTION, INSTRUCTION]
    assert all(c.model == "qwen" for c in calls)
    # Without the field the replica gets none, so the model's configured default applies.
    r = client.post(route, json={**ROUTES[route], "model": "qwen"})
    assert r.status_code == 200, r.text
    assert [c.instruction for c in calls[2:]] == [None, None]


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("model", ["words", "encoder"])
def test_a_model_that_takes_none_is_refused_before_fan_out(
    client: TestClient, handles: dict[str, FakeScorer], route: str, model: str,
) -> None:
    r = client.post(route, json={**ROUTES[route], "model": model, "instruction": INSTRUCTION})
    error = _refused(r)
    assert error["type"] == "invalid_request_error"
    assert f"model {model!r}" in error["message"]
    assert handles["preset"].calls == [] and handles["plugin"].calls == []


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_custom_model_is_refused_by_its_replica(
    client: TestClient, handles: dict[str, FakeScorer], route: str,
) -> None:
    r = client.post(route, json={**ROUTES[route], "model": "repo", "instruction": INSTRUCTION})
    error = _refused(r)
    assert "does not apply to backend 'plugin:words'" in error["message"]
    assert {c.instruction for c in handles["custom"].calls} == {INSTRUCTION}
    r = client.post(route, json={**ROUTES[route], "model": "repo"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("route", list(ROUTES))
def test_instruction_types_are_strict_and_blank_is_refused(
    client: TestClient, handles: dict[str, FakeScorer], route: str,
) -> None:
    for bad in (5, ["a"], True, {"text": "a"}):
        r = client.post(route, json={**ROUTES[route], "model": "qwen", "instruction": bad})
        assert r.status_code == 422, r.text
        assert "instruction" in r.text
    _refused(client.post(route, json={**ROUTES[route], "model": "qwen", "instruction": "  "}))
    long = "x" * 20_000
    _refused(client.post(route, json={**ROUTES[route], "model": "qwen", "instruction": long}),
             status=413)
    assert handles["preset"].calls == []


def test_openapi_documents_the_field_on_every_route(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    bodies = [schemas["V1RerankRequest"], schemas["V2RerankRequest"]]
    # /rerank parses its body by hand (TEI or documents shape): both are spelled out inline.
    for route in ("/rerank", "/infinity/rerank"):
        body = doc["paths"][route]["post"]["requestBody"]["content"]["application/json"]
        bodies.extend(body["schema"].get("oneOf", [body["schema"]]))
    assert len(bodies) == 5
    for schema in bodies:
        field = schema["properties"]["instruction"]
        assert "instruction-following" in field["description"]


def test_instruction_error_pickles_with_its_field() -> None:
    err = InvalidInputError("instruction does not apply", param="instruction")
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, InvalidInputError) and back.param == "instruction"


def test_decoder_presets_refuse_max_chunks_per_doc_in_the_ingress(
    client: TestClient, handles: dict[str, FakeScorer],
) -> None:
    r = client.post("/v1/rerank", json={**ROUTES["/v1/rerank"], "model": "qwen",
                                        "max_chunks_per_doc": 2})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "max_chunks_per_doc"
    r = client.post("/v2/rerank", json={**ROUTES["/v2/rerank"], "model": "qwen",
                                        "max_tokens_per_doc": 3, "instruction": INSTRUCTION})
    assert r.status_code == 200, r.text
    [first, _] = handles["preset"].calls
    assert first.truncation is not None and first.truncation.max_document_tokens == 3
    assert first.instruction == INSTRUCTION
