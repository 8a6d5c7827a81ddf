"""The ``llm`` backend through real sockets against the loopback provider stand-ins.

Everything goes through the public API (``reranker.Reranker`` with an ``llm`` config), so the
config parsing, backend registry, HTTP client and scoring are all exercised together. Each
fault must end in its documented error within the time the config allows.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from reranker import (
    ProviderError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderStatusError,
    ProviderTimeoutError,
    Reranker,
)
from tests.integration.provider_standins import ProviderStandIn, overlap_score

pytestmark = pytest.mark.integration

PROVIDERS = ["cohere", "jina", "voyage"]
KEY_ENV = "RERANKER_STANDIN_KEY"
QUERY = "capital city of France"
DOCUMENTS = [
    "Berlin is the capital of Germany",
    "Paris is the capital city of France",
    "France is known for cheese",
    "The city of Lyon",
    "Bananas are yellow",
]
FAST = {"timeout_s": 0.5, "max_retries": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.05}


def bound_s(cfg: dict[str, Any]) -> float:
    """Documented worst case of one request: every attempt times out, every backoff is full."""
    retries = cfg["max_retries"]
    return (retries + 1) * cfg["timeout_s"] + retries * cfg["backoff_max_s"] + 0.5


@pytest.fixture
def standin(provider_standin: ProviderStandIn) -> Iterator[ProviderStandIn]:
    """The session stand-in with no faults armed and no requests recorded."""
    provider_standin.reset()
    yield provider_standin
    provider_standin.reset()


@pytest.fixture
def make_reranker(standin: ProviderStandIn, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv(KEY_ENV, standin.api_key)
    made: list[Reranker] = []

    def make(provider: str = "cohere", **overrides: Any) -> Reranker:
        config = {
            "type": "llm",
            "provider": provider,
            "model": f"{provider}-standin-model",
            "base_url": standin.base_url(provider),
            "api_key_env": KEY_ENV,
            **FAST,
            **overrides,
        }
        rr = Reranker(config)
        made.append(rr)
        return rr

    yield make
    for rr in made:
        rr.close()


def expected_order(query: str, documents: list[str]) -> list[int]:
    scores = [overlap_score(query, d) for d in documents]
    return sorted(range(len(documents)), key=lambda i: -scores[i])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_ranking_is_correct(provider: str, make_reranker: Any, standin: ProviderStandIn) -> None:
    rr = make_reranker(provider)
    results = rr.rerank(QUERY, DOCUMENTS, top_k=3)
    assert [r.index for r in results] == expected_order(QUERY, DOCUMENTS)[:3]
    for r in results:
        assert r.score == pytest.approx(overlap_score(QUERY, DOCUMENTS[r.index]), abs=1e-6)
        assert r.document == DOCUMENTS[r.index]
    (seen,) = standin.requests
    assert seen.status == 200
    assert seen.provider == provider
    assert seen.body["documents"] == DOCUMENTS
    assert rr.name == f"{provider}:{provider}-standin-model"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_async_rerank_on_a_long_lived_loop(provider: str, make_reranker: Any) -> None:
    rr = make_reranker(provider)
    for _ in range(3):
        results = await rr.arerank(QUERY, DOCUMENTS)
        assert [r.index for r in results] == expected_order(QUERY, DOCUMENTS)
    await rr.backend.aclose()  # type: ignore[attr-defined]


async def test_sync_rerank_inside_a_running_loop(make_reranker: Any) -> None:
    rr = make_reranker("jina")
    results = rr.rerank(QUERY, DOCUMENTS, top_k=1)
    assert results[0].index == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stand_in_sees_split_requests(
    provider: str, make_reranker: Any, standin: ProviderStandIn
) -> None:
    documents = [f"{DOCUMENTS[i % len(DOCUMENTS)]} number {i}" for i in range(25)]
    rr = make_reranker(provider, max_documents_per_request=10, max_concurrency=2)
    results = rr.rerank(QUERY, documents)
    top = "top_k" if provider == "voyage" else "top_n"
    sizes = sorted(len(s.body["documents"]) for s in standin.requests)
    assert sizes == [5, 10, 10]
    assert all(s.body[top] == len(s.body["documents"]) for s in standin.requests)
    assert sorted(d for s in standin.requests for d in s.body["documents"]) == sorted(documents)
    assert [r.index for r in results] == expected_order(QUERY, documents)


def test_429_retry_after_is_honoured(make_reranker: Any, standin: ProviderStandIn) -> None:
    standin.rate_limit(1, retry_after="1")
    rr = make_reranker("cohere", backoff_max_s=2.0)
    start = time.monotonic()
    results = rr.rerank(QUERY, DOCUMENTS, top_k=1)
    elapsed = time.monotonic() - start
    assert results[0].index == 1
    assert [s.status for s in standin.requests] == [429, 200]
    assert 1.0 <= elapsed < 1.0 + bound_s({**FAST, "backoff_max_s": 2.0})


def test_429_forever_is_a_rate_limit_error(make_reranker: Any, standin: ProviderStandIn) -> None:
    standin.rate_limit(100, retry_after="0")
    rr = make_reranker("voyage")
    start = time.monotonic()
    with pytest.raises(ProviderRateLimitError) as info:
        rr.rerank(QUERY, DOCUMENTS)
    assert time.monotonic() - start < bound_s(FAST)
    assert info.value.retry_after_s == 0.0
    assert "rate limit exceeded" in str(info.value)
    assert [s.status for s in standin.requests] == [429] * 3


@pytest.mark.parametrize("provider", PROVIDERS)
def test_500_then_success(provider: str, make_reranker: Any, standin: ProviderStandIn) -> None:
    standin.server_error(2)
    results = make_reranker(provider).rerank(QUERY, DOCUMENTS, top_k=1)
    assert results[0].index == 1
    assert [s.status for s in standin.requests] == [500, 500, 200]


def test_500_forever_is_a_status_error(make_reranker: Any, standin: ProviderStandIn) -> None:
    standin.server_error(100)
    start = time.monotonic()
    with pytest.raises(ProviderStatusError) as info:
        make_reranker("jina").rerank(QUERY, DOCUMENTS)
    assert time.monotonic() - start < bound_s(FAST)
    assert info.value.status_code == 500
    assert "internal server error" in str(info.value)
    assert len(standin.requests) == FAST["max_retries"] + 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_slow_provider_is_a_timeout_within_bound(
    provider: str, make_reranker: Any, standin: ProviderStandIn
) -> None:
    standin.slow(5.0)
    cfg = {**FAST, "timeout_s": 0.3, "max_retries": 1}
    start = time.monotonic()
    with pytest.raises(ProviderTimeoutError):
        make_reranker(provider, **cfg).rerank(QUERY, DOCUMENTS)
    elapsed = time.monotonic() - start
    assert 2 * 0.3 <= elapsed < bound_s(cfg)
    assert len(standin.requests) == 2


def test_slow_but_in_time_succeeds(make_reranker: Any, standin: ProviderStandIn) -> None:
    standin.slow(0.2)
    results = make_reranker("cohere", timeout_s=1.0).rerank(QUERY, DOCUMENTS, top_k=1)
    assert results[0].index == 1
    assert len(standin.requests) == 1


def test_bad_json_is_a_response_error(make_reranker: Any, standin: ProviderStandIn) -> None:
    standin.bad_json(1)
    start = time.monotonic()
    with pytest.raises(ProviderResponseError, match="not valid JSON"):
        make_reranker("cohere").rerank(QUERY, DOCUMENTS)
    assert time.monotonic() - start < bound_s(FAST)
    assert len(standin.requests) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_missing_indices_is_a_response_error(
    provider: str, make_reranker: Any, standin: ProviderStandIn
) -> None:
    standin.missing_indices(1)
    with pytest.raises(ProviderResponseError, match="missing indices"):
        make_reranker(provider).rerank(QUERY, DOCUMENTS)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_wrong_key_is_401_without_retry(
    provider: str, standin: ProviderStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "wrong-key-9876543210"
    monkeypatch.setenv(KEY_ENV, wrong)
    rr = Reranker(
        {
            "type": "llm",
            "provider": provider,
            "model": "m",
            "base_url": standin.base_url(provider),
            "api_key_env": KEY_ENV,
            **FAST,
        }
    )
    with pytest.raises(ProviderStatusError) as info:
        rr.rerank(QUERY, DOCUMENTS)
    rr.close()
    assert info.value.status_code == 401
    assert "invalid api token" in str(info.value)
    assert wrong not in str(info.value) and wrong not in repr(rr.backend)
    (seen,) = standin.requests
    assert seen.authorization == f"Bearer {wrong}"


def test_stand_in_rejects_bad_requests_like_the_api(standin: ProviderStandIn) -> None:
    """The stand-in's own validation: what makes the payload tests above meaningful."""
    import httpx

    auth = {"Authorization": f"Bearer {standin.api_key}"}
    ok = {"model": "m", "query": "q", "documents": ["a"], "top_k": 1, "truncation": True}
    url = standin.base_url("voyage") + "/v1/rerank"
    assert httpx.post(url, json=ok, headers=auth).status_code == 200
    assert httpx.post(url, json={**ok, "top_n": 1}, headers=auth).status_code == 400
    missing = {k: v for k, v in ok.items() if k != "model"}
    assert httpx.post(url, json=missing, headers=auth).status_code == 400
    too_many = {**ok, "documents": ["a"] * 1001}
    assert httpx.post(url, json=too_many, headers=auth).status_code == 400
    assert httpx.post(url, json=ok).status_code == 401


def test_unreachable_provider_fails_within_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv(KEY_ENV, "k")
    rr = Reranker(
        {
            "type": "llm",
            "provider": "cohere",
            "model": "m",
            "base_url": f"http://127.0.0.1:{port}",
            "api_key_env": KEY_ENV,
            **FAST,
        }
    )
    start = time.monotonic()
    with pytest.raises(ProviderError):
        rr.rerank(QUERY, DOCUMENTS)
    assert time.monotonic() - start < bound_s(FAST)
    rr.close()
