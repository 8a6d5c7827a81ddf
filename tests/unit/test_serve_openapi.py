"""The OpenAPI document and the docs pages, over fake handles (no Ray).

The document must describe what the server really does: every status a rerank route answers,
with the ``{"error": {...}}`` body it really sends, an example of each request, and a
description on every request field. The docs pages must load their scripts from the app, so
they render with no internet access.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deployments.serve.api_docs import RERANK_STATUSES
from deployments.serve.http_api import build_api
from tests.unit.serve_fakes import service, settings

RERANK_ROUTES = ("/v1/rerank", "/v2/rerank", "/rerank", "/infinity/rerank")


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(build_api(service(settings(api_keys=("secret-key",))))) as c:
        yield c


@pytest.fixture(scope="module")
def document(client: TestClient) -> dict[str, Any]:
    r = client.get("/openapi.json")  # no key: the docs are open
    assert r.status_code == 200
    return dict(r.json())


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _request_schemas(doc: dict[str, Any], op: dict[str, Any]) -> list[dict[str, Any]]:
    schema = _resolve(doc, op["requestBody"]["content"]["application/json"]["schema"])
    return [_resolve(doc, s) for s in schema.get("oneOf", [schema])]


def test_every_rerank_route_documents_its_statuses_with_the_error_schema(
        document: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path in RERANK_ROUTES:
        responses = document["paths"][path]["post"]["responses"]
        assert {int(s) for s in responses} == {200, *RERANK_STATUSES}, path
        for status in RERANK_STATUSES:
            content = responses[str(status)]["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}, (path,
                                                                                        status)
            example = content["example"]
            assert set(example) == {"error"}
            # FastAPI drops null values from examples in the document: "param": null is absent.
            assert {"message", "type"} <= set(example["error"]) <= {"message", "type", "param"}
            assert example["error"]["type"].endswith("_error") or status == 413
            assert responses[str(status)]["description"], (path, status)
    error = document["components"]["schemas"]["ErrorResponse"]
    detail = _resolve(document, error["properties"]["error"])
    assert set(detail["properties"]) == {"message", "type", "param"}


def test_every_rerank_route_has_request_examples(document: dict[str, Any]) -> None:
    for path in RERANK_ROUTES:
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert body["examples"], path
        for example in body["examples"].values():
            assert example["value"]["query"], path


def test_rerank_accepts_both_shapes_in_its_document(document: dict[str, Any]) -> None:
    schemas = _request_schemas(document, document["paths"]["/rerank"]["post"])
    assert [sorted(s["required"]) for s in schemas] == [["query", "texts"],
                                                        ["documents", "query"]]


def test_every_request_field_has_a_description(document: dict[str, Any]) -> None:
    seen = 0
    for path in RERANK_ROUTES:
        for schema in _request_schemas(document, document["paths"][path]["post"]):
            for name, field in schema["properties"].items():
                assert field.get("description"), f"{path} {schema.get('title')}.{name}"
                seen += 1
    assert seen >= 30


def test_docs_pages_use_only_assets_served_by_the_app(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        r = client.get(page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        urls = re.findall(r'(?:src|href)="([^"]+)"', r.text)
        assert urls, page
        for url in urls:
            assert url.startswith("/") and not url.startswith("//"), (page, url)
            asset = client.get(url)  # no key: browsers fetch these without one
            assert asset.status_code == 200, (page, url)
            kind = asset.headers["content-type"]
            if url.endswith(".js"):
                assert "javascript" in kind and len(asset.content) > 100_000, url
            elif url.endswith(".css"):
                assert kind.startswith("text/css"), url
        assert "cdn" not in r.text.lower()
        assert re.search(r"https?://", r.text) is None, page


def test_api_key_still_guards_the_api(client: TestClient) -> None:
    assert client.get("/v1/models").status_code == 401
    assert client.get("/docs-assets/../v1/models").status_code in (401, 404)
