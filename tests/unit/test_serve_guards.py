"""What the ingress refuses before any scoring: strict request types, API keys, body size and
the in-flight body budget, with bounded metric labels for everything it refuses."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from deployments.serve.http_api import build_api
from deployments.serve.metrics import ERROR_TYPES, error_type_label
from tests.unit.serve_fakes import FakeScorer, ScoreCall, overlap_scores, service, settings

KEY = "unit-test-key"


@dataclass
class Recorded:
    """A fake of the app's metrics recorder that keeps every label set it was given."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    def record(self, route: str, model: str, status: int, *, error_type: str | None = None,
               documents: int = 0, latency_s: float | None = None) -> None:
        self.calls.append({"route": route, "model": model, "status": status,
                           "type": error_type})

    def labels(self, name: str) -> set[Any]:
        return {c[name] for c in self.calls}


# --- strict types on the wire ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": True}, "top_n"),
        ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": "3"}, "top_n"),
        ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": 1.5}, "top_n"),
        ("/v1/rerank", {"query": "q", "documents": ["a"], "return_documents": "yes"},
         "return_documents"),
        ("/v1/rerank", {"query": "q", "documents": ["a"], "max_chunks_per_doc": "2"},
         "max_chunks_per_doc"),
        ("/v1/rerank", {"query": 5, "documents": ["a"]}, "query"),
        ("/v1/rerank", {"query": "q", "documents": ["a"], "rank_fields": "title"},
         "rank_fields"),
        ("/v2/rerank", {"query": "q", "documents": ["a"], "top_n": False}, "top_n"),
        ("/v2/rerank", {"query": "q", "documents": ["a"], "max_tokens_per_doc": "512"},
         "max_tokens_per_doc"),
        ("/v2/rerank", {"query": "q", "documents": ["a"], "model": 3}, "model"),
        ("/rerank", {"query": "q", "texts": ["a"], "truncate": 0}, "truncate"),
        ("/rerank", {"query": "q", "texts": ["a"], "truncate": "false"}, "truncate"),
        ("/rerank", {"query": "q", "texts": ["a"], "raw_scores": 1}, "raw_scores"),
        ("/rerank", {"query": "q", "texts": ["a"], "return_text": "true"}, "return_text"),
        ("/rerank", {"query": "q", "texts": [1]}, "texts.0"),
    ],
)
def test_wire_types_are_strict(path: str, body: dict[str, Any], param: str) -> None:
    plugin = FakeScorer()
    with TestClient(build_api(service(plugin=plugin))) as client:
        r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    assert r.json() == {"error": {"message": r.json()["error"]["message"],
                                  "type": "invalid_request_error", "param": param}}
    assert param.split(".")[0] in r.json()["error"]["message"]
    assert not plugin.calls


def test_well_typed_requests_still_pass() -> None:
    with TestClient(build_api(service())) as client:
        ok = client.post("/v1/rerank", json={"query": "q", "documents": ["a", {"text": "b"}],
                                             "top_n": 1, "return_documents": True,
                                             "unknown_field": "ignored"})
        assert ok.status_code == 200, ok.text
        tei = client.post("/rerank", json={"query": "q", "texts": ["a"], "truncate": True,
                                           "raw_scores": False})
        assert tei.status_code == 200, tei.text


# --- keys and body size ----------------------------------------------------------------------


def test_api_keys_guard_all_but_open_paths() -> None:
    with TestClient(build_api(service(settings(api_keys=(KEY, "k2"))))) as client:
        body = {"query": "q", "documents": ["a"]}
        r = client.post("/v1/rerank", json=body)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["type"] == "authentication_error"
        assert client.post("/v2/rerank", json=body,
                           headers={"authorization": "Bearer wrong"}).status_code == 401
        for key in (KEY, "k2"):
            assert client.post("/v1/rerank", json=body,
                               headers={"authorization": f"Bearer {key}"}).status_code == 200
        assert client.get("/health").status_code == 200
        assert client.get("/v1/models").status_code == 401


def test_body_over_the_limit_is_413_declared_or_streamed() -> None:
    svc = service(settings(limits={"max_body_bytes": 2048}))
    with TestClient(build_api(svc)) as client:
        big = {"query": "q", "documents": ["x" * 3000]}
        r = client.post("/v1/rerank", json=big)
        assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"

        def chunked() -> Any:  # no content-length: counted as it arrives
            yield b'{"query": "q", "documents": ["'
            for _ in range(5):
                yield b"z" * 1000
            yield b'"]}'

        r = client.post("/v1/rerank", content=chunked(),
                        headers={"content-type": "application/json"})
        assert r.status_code == 413


# --- backpressure: the in-flight body budget -------------------------------------------------


async def test_bodies_over_the_inflight_budget_are_429_until_one_finishes() -> None:
    release = asyncio.Event()
    arrived = asyncio.Event()

    async def held(call: ScoreCall, attempt: int) -> list[float]:
        if len(call.texts[0]) > 100:  # the big request stays in flight until released
            arrived.set()
            await release.wait()
        return overlap_scores(call.query, call.texts)

    # Room for one 3 KB body, not two.
    svc = service(settings(limits={"max_body_bytes": 4096, "max_inflight_body_bytes": 5000},
                           chunk_size=100), plugin=FakeScorer(held))
    recorded = Recorded()
    body = {"query": "q", "documents": ["y" * 3000]}
    transport = httpx.ASGITransport(app=build_api(svc, recorded))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        first = asyncio.ensure_future(client.post("/v1/rerank", json=body))
        await asyncio.wait_for(arrived.wait(), 5)

        busy = await client.post("/v1/rerank", json=body)
        assert busy.status_code == 429
        assert busy.json()["error"]["type"] == "rate_limit_error"
        assert int(busy.headers["retry-after"]) >= 1

        async def streamed() -> AsyncIterator[bytes]:  # no content-length: counted as read
            yield b'{"query": "q", "documents": ["'
            yield b"s" * 3000
            yield b'"]}'

        busy = await client.post("/v1/rerank", content=streamed(),
                                 headers={"content-type": "application/json"})
        assert busy.status_code == 429
        small = await client.post("/v1/rerank", json={"query": "q", "documents": ["a"]})
        assert small.status_code == 200  # what fits the budget still runs

        release.set()
        assert (await first).status_code == 200
        # The finished request gave its bytes back: the same body fits again, twice in a row.
        for _ in range(2):
            assert (await client.post("/v1/rerank", json=body)).status_code == 200
    assert {"route": "/v1/rerank", "model": "unknown", "status": 429,
            "type": "rate_limit_error"} in recorded.calls


def test_full_scorer_queue_is_429_with_retry_after() -> None:
    from ray.serve.exceptions import BackPressureError

    async def full(call: ScoreCall, attempt: int) -> list[float]:
        raise BackPressureError(num_queued_requests=64, max_queued_requests=64)

    with TestClient(build_api(service(plugin=FakeScorer(full)))) as client:
        r = client.post("/rerank", json={"query": "q", "texts": ["a"]})
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["type"] == "rate_limit_error"


# --- bounded metric labels --------------------------------------------------------------------


def test_metric_labels_stay_bounded_whatever_clients_send() -> None:
    recorded = Recorded()
    svc = service(settings(api_keys=(KEY,)))
    auth = {"authorization": f"Bearer {KEY}"}
    with TestClient(build_api(svc, recorded)) as client:
        for i in range(20):
            junk = f"/{uuid.uuid4().hex}/{i}"
            client.post(junk, json={})  # 401 before routing, on a path nobody serves
            client.post(junk, json={}, headers=auth)  # 404
            client.post("/v1/rerank", json={"query": "q", "documents": ["a"],
                                            "model": f"gpt-{uuid.uuid4().hex}"}, headers=auth)
            client.post("/v2/rerank", json={"query": "q", "documents": ["a"],
                                            "model": f"m{i}", "top_n": "1"}, headers=auth)
            client.post("/rerank", json={"query": "q", "texts": ["a"], "model": "local"},
                        headers=auth)
            client.post("/v1/rerank?x=" + uuid.uuid4().hex, json={"query": "q"})
    routes, models = recorded.labels("route"), recorded.labels("model")
    kinds = recorded.labels("type")
    assert routes == {"unmatched", "/v1/rerank", "/v2/rerank", "/rerank"}
    assert models == {"unknown", "local"}
    assert kinds - {None} <= ERROR_TYPES
    assert {"authentication_error", "not_found_error", "invalid_request_error"} <= kinds
    assert len(recorded.calls) >= 20 * 5  # every refusal was counted, under few label values


def test_error_types_outside_the_fixed_set_count_as_internal() -> None:
    assert error_type_label("not_found_error") == "not_found_error"
    assert error_type_label("made-up-" + uuid.uuid4().hex) == "internal_error"
