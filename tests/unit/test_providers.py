"""Provider backends over ``httpx.MockTransport``: wire formats, split/merge, retries, errors.

The mock handlers play the provider: they read the request the backend really sent and answer
like the API would, so what is tested is the backend's own payload building, HTTP handling and
response parsing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import numpy as np
import pytest

from reranker import LlmConfig, Reranker
from reranker.errors import (
    BackendError,
    ConfigError,
    ProviderError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderStatusError,
    ProviderTimeoutError,
)
from reranker.providers import (
    ApiKey,
    CohereProvider,
    JinaProvider,
    ProviderBackend,
    VoyageProvider,
    build_provider_backend,
)
from reranker.providers.client import RetryPolicy, backoff_delay, parse_retry_after

KEY = "sk-test-SECRET-0123456789"
ENV = {"TEST_RERANK_KEY": KEY}
RESULTS_KEY = {"cohere": "results", "jina": "results", "voyage": "data"}
PATHS = {"cohere": "/v2/rerank", "jina": "/v1/rerank", "voyage": "/v1/rerank"}
PROVIDERS = ["cohere", "jina", "voyage"]

Handler = Callable[[httpx.Request], Any]


def doc_score(doc: str) -> float:
    """The mock provider's relevance: documents are named 'doc-<n>', score n / 10_000."""
    return int(doc.rsplit("-", 1)[1]) / 10_000


def answer(provider: str, request: httpx.Request, *, drop: int = 0) -> httpx.Response:
    """A well-formed provider response, sorted best first like the real APIs."""
    body = json.loads(request.content)
    docs = body["documents"]
    ranked = sorted(range(len(docs)), key=lambda i: -doc_score(docs[i]))
    limit = body.get("top_k" if provider == "voyage" else "top_n", len(docs))
    items = [{"index": i, "relevance_score": doc_score(docs[i])} for i in ranked[:limit]]
    return httpx.Response(200, json={RESULTS_KEY[provider]: items[drop:]})


def make_backend(
    provider: str, handler: Handler, **overrides: Any
) -> ProviderBackend:
    options: dict[str, Any] = {
        "provider": provider,
        "model": "test-model",
        "api_key_env": "TEST_RERANK_KEY",
        "base_url": "https://provider.test",
        "timeout_s": 1.0,
        "max_retries": 2,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        **overrides,
    }
    return build_provider_backend(
        LlmConfig(**options), transport=httpx.MockTransport(handler), environ=ENV
    )


class Recorder:
    """A handler that records requests and answers with a scripted sequence of responses."""

    def __init__(self, provider: str, script: list[Any] | None = None) -> None:
        self.provider = provider
        self.script = list(script or [])
        self.requests: list[httpx.Request] = []
        self.bodies: list[dict[str, Any]] = []
        self.times: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(json.loads(request.content))
        self.times.append(time.monotonic())
        step = self.script.pop(0) if self.script else "ok"
        if step == "ok":
            return answer(self.provider, request)
        if isinstance(step, BaseException):
            raise step
        assert isinstance(step, httpx.Response)
        return step


def docs(n: int) -> list[str]:
    return [f"doc-{i}" for i in range(n)]


# --- wire formats ---------------------------------------------------------------------------


def test_cohere_payload_shape() -> None:
    rec = Recorder("cohere")
    backend = make_backend("cohere", rec, max_tokens_per_doc=512)
    backend.score("what is onnx", ["doc-1", "doc-2"])
    (request,) = rec.requests
    assert request.method == "POST"
    assert str(request.url) == "https://provider.test/v2/rerank"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert rec.bodies[0] == {
        "model": "test-model",
        "query": "what is onnx",
        "documents": ["doc-1", "doc-2"],
        "top_n": 2,
        "max_tokens_per_doc": 512,
    }


def test_jina_payload_shape() -> None:
    rec = Recorder("jina")
    make_backend("jina", rec).score("q", ["doc-1", "doc-2", "doc-3"])
    assert str(rec.requests[0].url) == "https://provider.test/v1/rerank"
    assert rec.bodies[0] == {
        "model": "test-model",
        "query": "q",
        "documents": ["doc-1", "doc-2", "doc-3"],
        "top_n": 3,
        "return_documents": False,
    }


def test_voyage_payload_shape() -> None:
    rec = Recorder("voyage")
    make_backend("voyage", rec).score("q", ["doc-1"])
    assert str(rec.requests[0].url) == "https://provider.test/v1/rerank"
    assert rec.bodies[0] == {
        "model": "test-model",
        "query": "q",
        "documents": ["doc-1"],
        "top_k": 1,
        "truncation": True,
    }


def test_request_max_tokens_per_doc_is_passed_on_to_cohere_only() -> None:
    from reranker import InvalidInputError, Reranker
    from reranker.types import Truncation

    rec = Recorder("cohere")
    backend = make_backend("cohere", rec, max_tokens_per_doc=512)
    assert backend.truncation_fields == {"max_document_tokens"}
    backend.score("q", ["doc-1", "doc-2"], Truncation(max_document_tokens=7))
    backend.score("q", ["doc-1", "doc-2"])
    Reranker(backend=backend).rerank("q", ["doc-1", "doc-2"], max_tokens_per_doc=9)
    assert [b["max_tokens_per_doc"] for b in rec.bodies] == [7, 512, 9]
    for other in (Truncation(side="left", field="texts"), Truncation(allow=False, field="texts"),
                  Truncation(max_chunks=2)):
        with pytest.raises(InvalidInputError) as info:
            backend.score("q", ["doc-1"], other)
        assert info.value.param == other.field
    assert len(rec.bodies) == 3  # refused before anything was sent
    for provider in ("jina", "voyage"):
        quiet = Recorder(provider)
        plain = make_backend(provider, quiet)
        assert not plain.truncation_fields
        with pytest.raises(InvalidInputError) as info:
            plain.score("q", ["doc-1"], Truncation(max_document_tokens=7))
        assert info.value.param == "max_tokens_per_doc"
        with pytest.raises(InvalidInputError, match="cuts documents itself"):
            Reranker(backend=plain).rerank("q", ["doc-1"], max_tokens_per_doc=7)
        assert quiet.bodies == []


def test_providers_declare_and_refuse_instructions_before_sending() -> None:
    from reranker import InvalidInputError
    from reranker.backends import ScoreItem

    rec = Recorder("cohere")
    backend = make_backend("cohere", rec)
    assert backend.takes_instruction is False
    with pytest.raises(InvalidInputError) as info:
        backend.score("q", ["doc-1"], None, "find fish")
    assert info.value.param == "instruction"
    out = backend.score_batch([ScoreItem("q", ["doc-1"]), ScoreItem("q", ["doc-2"], None, "x")])
    assert isinstance(out[1], InvalidInputError) and out[1].param == "instruction"
    assert [b["documents"] for b in rec.bodies] == [["doc-1"]]


def test_cohere_omits_max_tokens_per_doc_when_unset() -> None:
    body = CohereProvider("m").build_payload("q", ["a"])
    assert "max_tokens_per_doc" not in body


@pytest.mark.parametrize("provider", PROVIDERS)
def test_default_base_urls(provider: str) -> None:
    rec = Recorder(provider)
    backend = build_provider_backend(
        LlmConfig(provider=provider, model="m", api_key_env="TEST_RERANK_KEY"),
        transport=httpx.MockTransport(rec),
        environ=ENV,
    )
    backend.score("q", ["doc-1"])
    expected = {
        "cohere": "https://api.cohere.com/v2/rerank",
        "jina": "https://api.jina.ai/v1/rerank",
        "voyage": "https://api.voyageai.com/v1/rerank",
    }
    assert str(rec.requests[0].url) == expected[provider]
    assert backend.name == f"{provider}:m"
    assert backend.max_length is None
    assert backend.scores_are_probabilities is True


def test_base_url_path_prefix_is_kept() -> None:
    rec = Recorder("jina")
    make_backend("jina", rec, base_url="http://proxy.test/jina/").score("q", ["doc-1"])
    assert str(rec.requests[0].url) == "http://proxy.test/jina/v1/rerank"


# --- order, split and merge -----------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_scores_come_back_in_input_order(provider: str) -> None:
    documents = ["doc-7", "doc-3", "doc-9", "doc-1", "doc-5"]
    scores = make_backend(provider, Recorder(provider)).score("q", documents)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, [doc_score(d) for d in documents], rtol=1e-6)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_large_set_is_split_and_merged(provider: str) -> None:
    rec = Recorder(provider)
    documents = [f"doc-{i}" for i in random.Random(0).sample(range(5000), 2500)]
    scores = make_backend(provider, rec, max_documents_per_request=1000).score("q", documents)
    sizes = sorted(len(b["documents"]) for b in rec.bodies)
    assert sizes == [500, 1000, 1000]
    top = "top_k" if provider == "voyage" else "top_n"
    assert all(b[top] == len(b["documents"]) for b in rec.bodies)
    sent = [d for b in sorted(rec.bodies, key=lambda b: documents.index(b["documents"][0]))
            for d in b["documents"]]
    assert sent == documents
    np.testing.assert_allclose(scores, [doc_score(d) for d in documents], rtol=1e-6)


def test_provider_default_chunk_size_is_used() -> None:
    rec = Recorder("voyage")
    make_backend("voyage", rec).score("q", docs(1001))
    assert sorted(len(b["documents"]) for b in rec.bodies) == [1, 1000]


async def test_split_requests_run_concurrently_but_bounded() -> None:
    in_flight = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return answer("cohere", request)

    backend = make_backend("cohere", handler, max_documents_per_request=2, max_concurrency=3)
    start = time.monotonic()
    scores = await backend.ascore("q", docs(20))
    elapsed = time.monotonic() - start
    await backend.aclose()
    assert peak == 3
    assert elapsed < 10 * 0.05  # concurrent, not one after another
    np.testing.assert_allclose(scores, [doc_score(d) for d in docs(20)], rtol=1e-6)


async def test_failed_chunk_cancels_the_others() -> None:
    started: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        first = json.loads(request.content)["documents"][0]
        started.append(int(first.split("-")[1]))
        if first == "doc-0":
            return httpx.Response(400, json={"message": "bad request"})
        await asyncio.sleep(5)
        return answer("cohere", request)

    backend = make_backend("cohere", handler, max_documents_per_request=1, max_concurrency=4)
    start = time.monotonic()
    with pytest.raises(ProviderStatusError) as info:
        await backend.ascore("q", docs(4))
    assert info.value.status_code == 400
    assert time.monotonic() - start < 1.0
    await backend.aclose()


def test_empty_document_list_sends_nothing() -> None:
    rec = Recorder("cohere")
    scores = make_backend("cohere", rec).score("q", [])
    assert scores.shape == (0,) and scores.dtype == np.float32
    assert rec.requests == []


def test_reranker_ranks_with_a_provider_backend() -> None:
    backend = make_backend("jina", Recorder("jina"))
    results = Reranker(backend=backend).rerank("q", ["doc-2", "doc-8", "doc-5"], top_k=2)
    assert [r.index for r in results] == [1, 2]
    assert results[0].score == pytest.approx(0.0008)


# --- retries and errors ---------------------------------------------------------------------


def test_429_retry_after_is_honoured_then_success() -> None:
    rec = Recorder("cohere", [httpx.Response(429, headers={"Retry-After": "0.3"}), "ok"])
    backend = make_backend("cohere", rec, backoff_max_s=1.0)
    scores = backend.score("q", ["doc-4"])
    assert len(rec.requests) == 2
    assert rec.times[1] - rec.times[0] >= 0.3
    assert scores[0] == pytest.approx(0.0004)


def test_429_retry_after_as_http_date() -> None:
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=2), usegmt=True)
    rec = Recorder("voyage", [httpx.Response(429, headers={"Retry-After": when}), "ok"])
    backend = make_backend("voyage", rec, backoff_max_s=3.0)
    backend.score("q", ["doc-4"])
    # An HTTP date has one-second resolution: at least one second must have been waited.
    assert rec.times[1] - rec.times[0] >= 1.0


def test_retry_after_is_capped_by_backoff_max() -> None:
    rec = Recorder("cohere", [httpx.Response(429, headers={"Retry-After": "120"}), "ok"])
    start = time.monotonic()
    make_backend("cohere", rec, backoff_max_s=0.1).score("q", ["doc-1"])
    assert time.monotonic() - start < 1.0
    assert len(rec.requests) == 2


def test_429_forever_is_a_rate_limit_error() -> None:
    limited = httpx.Response(429, headers={"Retry-After": "0"}, json={"message": "slow down"})
    rec = Recorder("jina", [limited] * 10)
    with pytest.raises(ProviderRateLimitError) as info:
        make_backend("jina", rec, max_retries=2).score("q", ["doc-1"])
    assert len(rec.requests) == 3
    assert info.value.status_code == 429
    assert info.value.retry_after_s == 0.0
    assert info.value.provider == "jina"
    assert "slow down" in str(info.value)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_then_success(status: int) -> None:
    rec = Recorder("voyage", [httpx.Response(status, text="oops"), "ok"])
    scores = make_backend("voyage", rec).score("q", ["doc-9"])
    assert len(rec.requests) == 2
    assert scores[0] == pytest.approx(0.0009)


def test_500_forever_is_a_status_error_after_max_retries() -> None:
    rec = Recorder("cohere", [httpx.Response(500, json={"message": "internal boom"})] * 10)
    start = time.monotonic()
    with pytest.raises(ProviderStatusError) as info:
        make_backend("cohere", rec, max_retries=3).score("q", ["doc-1"])
    assert time.monotonic() - start < 1.0
    assert len(rec.requests) == 4
    assert info.value.status_code == 500
    assert not isinstance(info.value, ProviderRateLimitError)
    assert "internal boom" in str(info.value)
    assert "4 attempt" in str(info.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_4xx_is_not_retried(status: int) -> None:
    error = httpx.Response(status, json={"detail": "Provided API key is invalid."})
    rec = Recorder("voyage", [error])
    with pytest.raises(ProviderStatusError) as info:
        make_backend("voyage", rec).score("q", ["doc-1"])
    assert len(rec.requests) == 1
    assert info.value.status_code == status
    assert "Provided API key is invalid." in str(info.value)


def test_long_error_body_is_truncated() -> None:
    rec = Recorder("cohere", [httpx.Response(400, text="x" * 5000)])
    with pytest.raises(ProviderStatusError) as info:
        make_backend("cohere", rec).score("q", ["doc-1"])
    assert len(str(info.value)) < 500


@pytest.mark.parametrize(
    "content", [b"not json", b'{"results": [{"index": 0, "relevance', b"", b"<html>502</html>"]
)
def test_bad_json_is_a_response_error_not_retried(content: bytes) -> None:
    rec = Recorder("cohere", [httpx.Response(200, content=content)])
    with pytest.raises(ProviderResponseError):
        make_backend("cohere", rec).score("q", ["doc-1"])
    assert len(rec.requests) == 1


def item(index: Any, score: Any = 0.5) -> dict[str, Any]:
    return {"index": index, "relevance_score": score}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"results": [item(0)]}, "missing indices: 1"),
        ({"results": [item(0), item(0, 0.4)]}, "twice"),
        ({"results": [item(0), item(2)]}, "out of range"),
        ({"results": [item(0), item(-1)]}, "out of range"),
        ({"results": [item("0"), item(1)]}, "integer 'index'"),
        ({"results": [item(True), item(1)]}, "integer 'index'"),
        ({"results": [item(0, "high"), item(1)]}, "relevance_score"),
        ({"results": [item(0, None), item(1)]}, "relevance_score"),
        ({"results": [item(0), "1"]}, "not an object"),
        ({"data": []}, "no 'results' list"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_unusable_results_are_response_errors(body: Any, needle: str) -> None:
    rec = Recorder("cohere", [httpx.Response(200, json=body)])
    with pytest.raises(ProviderResponseError, match=needle):
        make_backend("cohere", rec).score("q", ["doc-1", "doc-2"])


def test_voyage_reads_data_not_results() -> None:
    with pytest.raises(ProviderResponseError, match="no 'data' list"):
        VoyageProvider("m").parse_response({"results": []}, 1)
    np.testing.assert_allclose(
        JinaProvider("m").parse_response(
            {"results": [item(1, 0.25), item(0, 1)]}, 2
        ),
        [1.0, 0.25],
    )


def test_slow_server_is_a_timeout_error_within_bound() -> None:
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await asyncio.sleep(10)
        return answer("cohere", request)

    backend = make_backend("cohere", handler, timeout_s=0.2, max_retries=1)
    start = time.monotonic()
    with pytest.raises(ProviderTimeoutError) as info:
        backend.score("q", ["doc-1"])
    elapsed = time.monotonic() - start
    assert calls == 2
    assert 0.4 <= elapsed < 0.4 + 0.05 + 0.5  # 2 attempts + one backoff, plus slack
    assert info.value.provider == "cohere"


def test_httpx_timeout_is_retried_then_succeeds() -> None:
    rec = Recorder("jina", [httpx.ReadTimeout("read timed out"), "ok"])
    assert make_backend("jina", rec).score("q", ["doc-3"])[0] == pytest.approx(0.0003)
    assert len(rec.requests) == 2


def test_httpx_timeout_forever_is_a_timeout_error() -> None:
    rec = Recorder("jina", [httpx.ConnectTimeout("connect timed out")] * 5)
    with pytest.raises(ProviderTimeoutError):
        make_backend("jina", rec, max_retries=2).score("q", ["doc-3"])
    assert len(rec.requests) == 3


def test_connection_errors_are_retried_then_a_provider_error() -> None:
    rec = Recorder("voyage", [httpx.ConnectError("connection refused")] * 5)
    with pytest.raises(ProviderError, match="could not be reached") as info:
        make_backend("voyage", rec, max_retries=2).score("q", ["doc-3"])
    assert not isinstance(info.value, ProviderTimeoutError)
    assert len(rec.requests) == 3


def test_parse_retry_after_forms() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(30.0)
    assert parse_retry_after(earlier, now=now.timestamp()) == 0.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("tomorrow") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None


def test_backoff_is_full_jitter_and_capped() -> None:
    policy = RetryPolicy(backoff_base_s=0.5, backoff_max_s=4.0)
    rng = random.Random(1)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0), (500, 4.0)]:
        delays = [backoff_delay(attempt, policy, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8 and min(delays) < ceiling * 0.2


# --- secrets --------------------------------------------------------------------------------


def test_api_key_never_reaches_reprs_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    def echo_handler(request: httpx.Request) -> httpx.Response:
        # A hostile or buggy server that echoes the credentials back in its error body.
        auth = request.headers["authorization"]
        if len(echo_handler.calls) == 0:  # type: ignore[attr-defined]
            echo_handler.calls.append(1)  # type: ignore[attr-defined]
            return httpx.Response(503, json={"message": f"overloaded for {auth}"})
        return httpx.Response(401, json={"message": f"invalid token {auth}", "key": KEY})

    echo_handler.calls = []  # type: ignore[attr-defined]
    caplog.set_level(logging.DEBUG)
    backend = make_backend("cohere", echo_handler)
    with pytest.raises(ProviderStatusError) as info:
        backend.score("q", ["doc-1"])
    exc = info.value
    rendered = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    texts = [str(exc), repr(exc), rendered, caplog.text, repr(backend), repr(backend.client),
             repr(backend.provider), str(vars(backend)), repr(ApiKey(KEY)), str(ApiKey(KEY))]
    for text in texts:
        assert KEY not in text
    assert "invalid token Bearer ***" in str(exc)
    assert any("retrying" in r.getMessage() for r in caplog.records)


def test_missing_key_env_var_is_a_config_error_naming_it() -> None:
    config = LlmConfig(provider="voyage", model="rerank-2.5")
    with pytest.raises(ConfigError, match="VOYAGE_API_KEY"):
        build_provider_backend(config, environ={})
    with pytest.raises(ConfigError, match="MY_KEY_VAR"):
        build_provider_backend(
            LlmConfig(provider="cohere", model="m", api_key_env="MY_KEY_VAR"),
            environ={"MY_KEY_VAR": "   ", "COHERE_API_KEY": KEY},
        )


@pytest.mark.parametrize(
    ("provider", "env"), [("cohere", "COHERE_API_KEY"), ("jina", "JINA_API_KEY"),
                          ("voyage", "VOYAGE_API_KEY")]
)
def test_default_key_variables(provider: str, env: str) -> None:
    backend = build_provider_backend(
        LlmConfig(provider=provider, model="m"), environ={env: KEY}
    )
    assert backend.name == f"{provider}:m"
    backend.close()


def test_key_is_read_from_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JINA_API_KEY", KEY)
    rec = Recorder("jina")
    backend = build_provider_backend(
        LlmConfig(provider="jina", model="m"), transport=httpx.MockTransport(rec)
    )
    backend.score("q", ["doc-1"])
    assert rec.requests[0].headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"provider": "voyage", "max_tokens_per_doc": 100}, "max_tokens_per_doc"),
        ({"provider": "jina", "max_tokens_per_doc": 100}, "max_tokens_per_doc"),
        ({"provider": "voyage", "max_documents_per_request": 1001}, "at most 1000"),
        ({"provider": "cohere", "max_documents_per_request": 10_001}, "at most 10000"),
        ({"provider": "cohere", "base_url": "ftp://x.test"}, "http"),
    ],
)
def test_invalid_provider_settings_are_config_errors(options: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        build_provider_backend(LlmConfig(model="m", **options), environ={
            "COHERE_API_KEY": KEY, "JINA_API_KEY": KEY, "VOYAGE_API_KEY": KEY})


# --- event loops and lifecycle --------------------------------------------------------------


def test_sync_score_twice_uses_fresh_loops() -> None:
    rec = Recorder("cohere")
    backend = make_backend("cohere", rec)
    first = backend.score("q", ["doc-1", "doc-2"])
    second = backend.score("q", ["doc-2", "doc-1"])
    np.testing.assert_allclose(first, second[::-1])
    assert backend.client._states == {}  # each private loop's client was closed with it
    backend.close()


async def test_sync_score_inside_a_running_loop_does_not_deadlock() -> None:
    backend = make_backend("jina", Recorder("jina"))
    scores = backend.score("q", ["doc-5"])
    assert scores[0] == pytest.approx(0.0005)
    backend.close()


async def test_long_lived_loop_reuses_one_client() -> None:
    backend = make_backend("voyage", Recorder("voyage"))
    for _ in range(3):
        await backend.ascore("q", ["doc-1", "doc-2"])
    assert len(backend.client._states) == 1
    client = next(iter(backend.client._states.values())).client
    await backend.aclose()
    assert client.is_closed
    await backend.aclose()  # twice is fine


async def test_sync_close_from_inside_the_loop_closes_its_client() -> None:
    backend = make_backend("voyage", Recorder("voyage"))
    await backend.ascore("q", ["doc-1"])
    client = next(iter(backend.client._states.values())).client
    backend.close()
    await asyncio.sleep(0.01)
    assert client.is_closed


def test_closed_backend_refuses_work() -> None:
    backend = make_backend("cohere", Recorder("cohere"))
    backend.close()
    backend.close()
    with pytest.raises(BackendError, match="closed"):
        backend.score("q", ["doc-1"])


def test_close_from_another_thread_closes_a_running_loops_client() -> None:
    backend = make_backend("cohere", Recorder("cohere"))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(backend.ascore("q", ["doc-1"]), loop).result(5)
        client = next(iter(backend.client._states.values())).client
        backend.close()
        assert client.is_closed
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_sync_score_from_many_threads() -> None:
    backend = make_backend("voyage", Recorder("voyage"), max_documents_per_request=3)
    documents = docs(10)
    with ThreadPoolExecutor(max_workers=8) as pool:
        outputs = list(pool.map(lambda _: backend.score("q", documents), range(16)))
    for scores in outputs:
        np.testing.assert_allclose(scores, [doc_score(d) for d in documents], rtol=1e-6)
    assert backend.client._states == {}
