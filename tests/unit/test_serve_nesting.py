"""Deeply nested JSON on every rerank route: a JSON 4xx naming the problem, never a 500.

Regression for issue 21 item 9: ``POST /rerank`` and ``/infinity/rerank`` parse their body by
hand and let ``RecursionError`` escape (a plain-text 500), and a Cohere v1 document object nested
a few hundred levels deep passed validation, then failed the response's serialization with
``return_documents`` (another plain-text 500); past ``MAX_DOCUMENT_DEPTH`` it is a 400 naming it.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from deployments.serve.http_api import build_api
from deployments.serve.service import MAX_DOCUMENT_DEPTH
from tests.unit.serve_fakes import service

ROUTES = ("/v1/rerank", "/v2/rerank", "/rerank", "/infinity/rerank")


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(build_api(service()), raise_server_exceptions=False)


def _nest(depth: int) -> str:
    return "[" * depth + "]" * depth


def _post(client: TestClient, path: str, body: str) -> tuple[int, dict[str, str]]:
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.headers["content-type"] == "application/json", (r.status_code, r.text[:200])
    return r.status_code, r.json()["error"]


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("depth", [5_000, 200_000])
def test_a_body_too_deep_to_parse_is_a_json_400(client: TestClient, path: str,
                                                depth: int) -> None:
    status, err = _post(client, path, _nest(depth))
    assert status == 400 and err["type"] == "invalid_request_error", err
    inner = '{"query": "q", "texts": ["a"], "documents": [{"text": "a", "m": ' + _nest(depth)
    inner += "}]}"
    status, err = _post(client, path, inner)
    assert status == 400 and err["type"] == "invalid_request_error", err


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank", "/rerank", "/infinity/rerank"])
def test_a_document_object_nested_past_the_limit_is_refused_naming_it(client: TestClient,
                                                                     path: str) -> None:
    deep = "[" * 900 + "1" + "]" * 900  # parses, but no response could carry it back
    body = ('{"query": "q", "return_documents": true, "documents": ["ok", {"text": "a", '
            f'"m": {deep}}}]}}')
    status, err = _post(client, path, body)
    assert status == 400 and err["type"] == "invalid_request_error", err
    assert err["param"] == "documents[1]", err
    assert f"nested deeper than {MAX_DOCUMENT_DEPTH} levels" in err["message"], err


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank", "/rerank", "/infinity/rerank"])
def test_a_document_object_at_the_limit_is_served(client: TestClient, path: str) -> None:
    # {"text": "a", "m": [[...[1]...]]}: the object is level 1, each list one more.
    deep = "[" * (MAX_DOCUMENT_DEPTH - 1) + "1" + "]" * (MAX_DOCUMENT_DEPTH - 1)
    body = ('{"query": "a", "return_documents": true, "documents": [{"text": "a", '
            f'"m": {deep}}}]}}')
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
