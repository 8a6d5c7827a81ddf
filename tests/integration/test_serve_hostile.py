"""Hostile requests against the real Serve app: each gets its 200 or its 4xx JSON error, and
``/ready`` still answers after each.

The app serves a tiny BERT (1-CPU replica, to check that its threads follow the reservation), the
same model chunking long documents (to reach the token budget), an XLM-R stand-in with an
8192-token window (``multilingual``'s) and a slow plugin (for clients that go away).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.ray_fixtures import RayCluster, deploy_app

pytestmark = pytest.mark.integration

PLUGINS = "tests.integration.serve_plugins"
BODY_LIMIT = 1_048_576
TOKEN_LIMIT = 4000
WORDS = "river bank money loan interest water fish boat capital city".split()


def _text(n_chars: int, seed: int = 0) -> str:
    words: list[str] = []
    size = 0
    i = seed
    while size < n_chars:
        word = WORDS[(i * 7 + i // 3) % len(WORDS)]
        words.append(word)
        size += len(word) + 1
        i += 1
    return " ".join(words)[:n_chars]


@pytest.fixture(scope="module")
def url(ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory,
        model_dirs: dict[str, Path]) -> Iterator[str]:
    from ray import serve

    from deployments.serve.app import build_app
    from deployments.serve.args import AppArgs
    from reranker.testing.families.encoder_models import build_cross_encoder

    long_window = build_cross_encoder(tmp_path_factory.mktemp("xlmr8k") / "m", arch="xlmr",
                                      num_heads=2, hidden_size=16, intermediate_size=32,
                                      max_position_embeddings=8192, seed=3)
    small = {"num_cpus": 0.25}
    args = AppArgs.model_validate({
        "models": {
            "tiny": {"type": "custom", "model_id": str(model_dirs["bert1"])},
            "chunked": {"type": "custom", "model_id": str(model_dirs["bert1"]),
                        "long_documents": "chunk"},
            "long8k": {"type": "custom", "model_id": str(long_window),
                       "max_request_tokens": 20_000},
            "slow": {"type": "plugin", "name": f"{PLUGINS}:SlowScorer",
                     "options": {"delay_s": 3.0, "delay_marker": "sleep"}},
        },
        "default_model": "tiny",
        "chunk_size": 8,
        "debug": True,
        "limits": {"max_body_bytes": BODY_LIMIT, "max_request_tokens": TOKEN_LIMIT},
        "deployments": {
            "ingress": {"num_replicas": 1, "ray_actor_options": small},
            "custom": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 1},
                       "max_models_per_replica": 3},
            "plugin": {"num_replicas": 1, "ray_actor_options": small},
        },
    })
    deploy_app(build_app(args), name="hostile")
    try:
        yield ray_cluster.http_url
    finally:
        serve.delete("hostile")


@pytest.fixture
def client(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=120) as c:
        yield c
        # Whatever the request did, the service still answers readiness.
        ready = c.get("/ready")
        assert ready.status_code == 200, ready.text


def _error(r: httpx.Response, status: int, kind: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err: dict[str, Any] = r.json()["error"]
    assert isinstance(err["message"], str) and err["message"]
    if kind is not None:
        assert err["type"] == kind, err
    return err


def test_long_query_with_long_documents(client: httpx.Client) -> None:
    body = {"query": _text(10_000), "documents": [_text(100_000, s) for s in range(4)]}
    r = client.post("/v1/rerank", json=body)
    assert r.status_code == 200, r.text
    assert sorted(x["index"] for x in r.json()["results"]) == [0, 1, 2, 3]


def test_many_long_documents_over_the_token_budget_are_413(client: httpx.Client) -> None:
    # 8 documents a chunk, each up to 10 windows of 128 tokens: far over 4000 tokens a call.
    body = {"model": "chunked", "query": "river bank",
            "documents": [_text(20_000, s) for s in range(24)]}
    err = _error(client.post("/v1/rerank", json=body), 413, "request_too_large")
    assert err["param"] == "max_request_tokens"
    assert f"max_request_tokens={TOKEN_LIMIT}" in err["message"]
    # The same model within the budget still answers.
    ok = client.post("/v1/rerank", json={"model": "chunked", "query": "river",
                                         "documents": ["river bank", "fish"]})
    assert ok.status_code == 200, ok.text


def test_8192_token_windows(client: httpx.Client) -> None:
    body = {"model": "long8k", "query": "money loan",
            "documents": [_text(60_000, 1), "a short one"]}
    r = client.post("/v1/rerank", json=body)
    assert r.status_code == 200, r.text
    assert len(r.json()["results"]) == 2


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"query": "q", "documents": ["a"], "top_n": "3"}, 422, "top_n"),
    ({"query": "q", "documents": ["a"], "top_n": True}, 422, "top_n"),
    ({"query": 5, "documents": ["a"]}, 422, "query"),
    ({"query": "q", "documents": "not a list"}, 422, "documents"),
    ({"query": "q", "documents": ["a"], "model": "no-such-model"}, 404, None),
])
def test_bad_types_and_unknown_models(client: httpx.Client, body: dict[str, Any], status: int,
                                      param: str | None) -> None:
    err = _error(client.post("/v1/rerank", json=body), status)
    if param is not None:
        assert param in str(err["param"]), err


def _body_of_size(size: int) -> bytes:
    docs = [_text(90_000, s) for s in range(11)]
    raw = json.dumps({"query": "river", "documents": docs}).encode()
    assert len(raw) < size
    need = size - len(raw)  # spread over the documents: each stays within its own limit
    docs = [d + "x" * (need // len(docs) + (i < need % len(docs))) for i, d in enumerate(docs)]
    raw = json.dumps({"query": "river", "documents": docs}).encode()
    assert len(raw) == size
    return raw


def test_bodies_at_and_over_the_limit(client: httpx.Client) -> None:
    headers = {"content-type": "application/json"}
    at = client.post("/v1/rerank", content=_body_of_size(BODY_LIMIT), headers=headers)
    assert at.status_code == 200, at.text
    over = client.post("/v1/rerank", content=_body_of_size(BODY_LIMIT + 1), headers=headers)
    _error(over, 413, "request_too_large")


def test_a_client_that_goes_away(url: str, client: httpx.Client) -> None:
    with httpx.Client(base_url=url, timeout=0.5) as impatient, pytest.raises(
            httpx.ReadTimeout):
        impatient.post("/v1/rerank", json={"model": "slow", "query": "please sleep",
                                           "documents": ["a", "b"]})
    r = client.post("/v1/rerank", json={"model": "tiny", "query": "q", "documents": ["q"]})
    assert r.status_code == 200, r.text


def test_a_replicas_threads_follow_its_cpu_reservation(client: httpx.Client) -> None:
    r = client.post("/v1/rerank", json={"query": "q", "documents": ["a", "b"]},
                    headers={"x-reranker-debug": "1"})
    assert r.status_code == 200, r.text
    chunks = r.json()["meta"]["debug"]["chunks"]
    assert [c["threads"] for c in chunks] == [1]  # num_cpus: 1, on a 4-CPU Ray
