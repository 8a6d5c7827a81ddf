"""Fallback chains over fake deployment handles: each trigger, each non-trigger, visibility.

The ``words`` model (plugin variant) is made to fail in each way a model can; ``local`` (custom
variant) scores by word overlap. No Ray is started.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from ray.exceptions import ActorDiedError
from ray.serve.exceptions import BackPressureError

from deployments.serve.args import AppArgs
from deployments.serve.errors import ApiError, to_api_error
from deployments.serve.fallback import FIRST_STAGE, FallbackHop, fallback_reason
from deployments.serve.http_api import build_api
from reranker.errors import (
    BackendError,
    BackendTimeoutError,
    ConfigError,
    InputTooLongError,
    InvalidInputError,
    ProviderRateLimitError,
    ProviderStatusError,
    ProviderTimeoutError,
)
from reranker.types import Truncation
from tests.unit.serve_fakes import (
    FakeScorer,
    ScoreCall,
    never,
    overlap_scores,
    service,
    settings,
)

QUERY = "dogs and cats"
DOCS = ["a cat", "dogs and cats", "nothing", "dogs", "cats and dogs here"]


def _raising(exc: BaseException) -> Any:
    async def behaviour(call: ScoreCall, attempt: int) -> list[float]:
        raise exc

    return behaviour


async def _rerank(svc: Any, **kw: Any) -> Any:
    args = {"model": "words", "query": QUERY, "texts": list(DOCS), "documents": None,
            "top_n": None, "return_documents": False, **kw}
    return await svc.rerank(**args)


def _svc(words: FakeScorer, local: FakeScorer | None = None, *, chain: tuple[str, ...] = ("local",),
         hops: list[tuple[FallbackHop, str]] | None = None, **kw: Any) -> Any:
    cfg = settings(fallbacks={"words": chain}, **kw)
    svc = service(cfg, plugin=words, custom=local or FakeScorer())
    if hops is not None:
        svc.on_fallback = lambda hop, nxt: hops.append((hop, nxt))
    return svc


@pytest.mark.parametrize(
    ("exc", "reason", "status"),
    [
        (ProviderRateLimitError("429 from cohere", provider="cohere"), "rate_limited", 429),
        (BackPressureError(num_queued_requests=64, max_queued_requests=64), "rate_limited", 429),
        (ProviderStatusError("503 from cohere", status_code=503), "failed", 502),
        (ProviderTimeoutError("cohere did not answer"), "timeout", 504),
        (BackendError("the plugin crashed"), "failed", 500),
        (BackendTimeoutError("the plugin took too long"), "timeout", 504),
    ],
)
async def test_server_failures_fall_back(exc: BaseException, reason: str, status: int) -> None:
    words, local = FakeScorer(_raising(exc)), FakeScorer()
    hops: list[tuple[FallbackHop, str]] = []
    outcome = await _rerank(_svc(words, local, hops=hops))
    assert outcome.model == "local"
    assert {c.model for c in local.calls} == {"local"}
    expected = overlap_scores(QUERY, DOCS)
    by_index = {r.index: r.score for r in outcome.results}
    assert [by_index[i] for i in range(len(DOCS))] == pytest.approx(expected)
    report = outcome.fallback
    assert (report.requested, report.answered_by) == ("words", "local")
    assert [(h.model, h.reason, h.status) for h in report.hops] == [("words", reason, status)]
    assert report.header() == f"words->local ({reason})"
    assert report.meta()["reason"] == reason and report.meta()["model"] == "local"
    assert hops == [(FallbackHop("words", reason, status), "local")]


async def test_a_lost_replica_falls_back() -> None:
    words = FakeScorer(_raising(ActorDiedError()))
    outcome = await _rerank(_svc(words, chunk_size=100))
    assert len(words.calls) == 1  # a plugin's lost call is not replayed: it may be billed
    assert outcome.model == "local" and outcome.fallback.hops[0].reason == "unavailable"


async def test_a_timeout_falls_back_and_cancels_the_slow_call() -> None:
    words = FakeScorer(never)
    outcome = await _rerank(_svc(words, request_timeout_s=0.05, chunk_size=100))
    assert outcome.model == "local" and outcome.fallback.hops[0].reason == "timeout"
    assert words.calls[0].cancelled


async def test_one_failed_chunk_sends_the_whole_request_to_the_fallback() -> None:
    async def second_chunk_fails(call: ScoreCall, attempt: int) -> list[float]:
        if call.texts[0] == DOCS[2]:
            raise BackendError("chunk 2 failed")
        return overlap_scores(call.query, call.texts)

    local = FakeScorer()
    outcome = await _rerank(_svc(FakeScorer(second_chunk_fails), local, chunk_size=2))
    assert outcome.model == "local"
    assert [t for c in local.calls for t in c.texts] == DOCS
    assert len(outcome.results) == len(DOCS)


@pytest.mark.parametrize(
    "exc",
    [
        InvalidInputError("documents[1] is not text", param="documents[1]"),
        InputTooLongError("documents[0] has 900 tokens; the limit is 512", param="documents[0]"),
        ApiError(413, "request_too_large", "too large"),
        ProviderStatusError("cohere answered 400: documents too long", status_code=400),
        ProviderStatusError("cohere answered 422", status_code=422),
    ],
)
async def test_client_errors_never_fall_back(exc: BaseException) -> None:
    local = FakeScorer()
    hops: list[tuple[FallbackHop, str]] = []
    with pytest.raises(Exception) as info:  # noqa: B017 - the status is what is checked
        await _rerank(_svc(FakeScorer(_raising(exc)), local, hops=hops))
    assert to_api_error(info.value).status == to_api_error(exc).status
    assert local.calls == [] and hops == []


async def test_without_fallbacks_a_failure_fails_the_request() -> None:
    local = FakeScorer()
    svc = service(settings(chunk_size=100),
                  plugin=FakeScorer(_raising(ProviderRateLimitError("429"))), custom=local)
    with pytest.raises(ProviderRateLimitError):
        await _rerank(svc)
    assert local.calls == []


async def test_first_stage_returns_input_order_with_placeholder_scores() -> None:
    words = FakeScorer(_raising(ProviderRateLimitError("429")))
    local = FakeScorer(_raising(BackendError("local down too")))
    hops: list[tuple[FallbackHop, str]] = []
    svc = _svc(words, local, chain=("local", FIRST_STAGE), hops=hops)
    documents = [{"text": d, "id": i} for i, d in enumerate(DOCS)]
    outcome = await _rerank(svc, documents=documents, top_n=3, return_documents=True)
    assert outcome.model == FIRST_STAGE
    assert [r.index for r in outcome.results] == [0, 1, 2]
    assert [r.score for r in outcome.results] == [1.0, 0.5, pytest.approx(1 / 3)]
    assert [r.document for r in outcome.results] == documents[:3]
    assert outcome.fallback.header() == "words->local->first_stage (rate_limited, failed)"
    assert [h.model for h, _ in hops] == ["words", "local"]
    assert [nxt for _, nxt in hops] == ["local", FIRST_STAGE]


async def test_every_link_failing_answers_the_last_error_naming_the_others() -> None:
    words = FakeScorer(_raising(ProviderRateLimitError("429", retry_after_s=3.0)))
    local = FakeScorer(_raising(BackendError("local down too")))
    with pytest.raises(ApiError) as info:
        await _rerank(_svc(words, local, chunk_size=100))
    err = info.value
    assert (err.status, err.type) == (500, "backend_error")
    assert "words (rate_limited)" in err.message and "local down too" in err.message
    assert isinstance(err.__cause__, BackendError)


async def test_a_client_error_of_the_fallback_model_is_answered_as_it_is() -> None:
    words = FakeScorer(_raising(ProviderRateLimitError("429")))
    local = FakeScorer(_raising(InputTooLongError("too long for local", param="documents[0]")))
    with pytest.raises(InputTooLongError):
        await _rerank(_svc(words, local, chain=("local", FIRST_STAGE), chunk_size=100))


async def test_the_request_options_reach_the_fallback_model() -> None:
    local = FakeScorer()
    svc = _svc(FakeScorer(_raising(ProviderRateLimitError("429"))), local, chunk_size=100)
    outcome = await _rerank(svc, top_n=2, truncation=Truncation(max_chunks=2))
    assert len(outcome.results) == 2
    assert local.calls[0].truncation == Truncation(max_chunks=2)


def test_fallback_reason_table() -> None:
    assert fallback_reason(ProviderRateLimitError("429")) == "rate_limited"
    assert fallback_reason(ConfigError("bad")) == "failed"
    assert fallback_reason(InvalidInputError("bad")) is None
    assert fallback_reason(ApiError(404, "not_found_error", "no")) is None
    assert to_api_error(ActorDiedError()).status == 503
    assert fallback_reason(ActorDiedError()) == "unavailable"
    # The server's own key or model name refused by the provider: another model can answer.
    assert fallback_reason(ProviderStatusError("401", status_code=401)) == "failed"
    wrapped = ApiError(502, "provider_error", "chunk failed")
    wrapped.__cause__ = ProviderStatusError("400", status_code=400)
    assert fallback_reason(wrapped) is None


# --- over HTTP: header and meta ---------------------------------------------------------------


@pytest.fixture
def client() -> Any:
    svc = _svc(FakeScorer(_raising(ProviderRateLimitError("429"))))
    with TestClient(build_api(svc)) as c:
        yield c


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank"])
def test_cohere_routes_say_so_in_meta_and_header(client: TestClient, path: str) -> None:
    r = client.post(path, json={"model": "words", "query": QUERY, "documents": DOCS})
    assert r.status_code == 200, r.text
    assert r.headers["x-reranker-fallback"] == "words->local (rate_limited)"
    fallback = r.json()["meta"]["fallback"]
    assert fallback == {"requested_model": "words", "model": "local", "reason": "rate_limited",
                        "tried": [{"model": "words", "reason": "rate_limited", "status": 429}]}
    if path == "/v1/rerank":
        assert r.json()["model"] == "local"


def test_tei_route_says_so_in_the_header(client: TestClient) -> None:
    r = client.post("/rerank", json={"model": "words", "query": QUERY, "texts": DOCS})
    assert r.status_code == 200, r.text
    assert r.headers["x-reranker-fallback"] == "words->local (rate_limited)"
    assert isinstance(r.json(), list)


def test_no_fallback_no_header_no_meta(client: TestClient) -> None:
    r = client.post("/v2/rerank", json={"model": "local", "query": QUERY, "documents": DOCS})
    assert r.status_code == 200
    assert "x-reranker-fallback" not in r.headers and "fallback" not in r.json()["meta"]


# --- configuration ------------------------------------------------------------------------------

MODELS = {"a": "fast", "b": "fast", "c": "fast"}


def test_fallbacks_config_is_accepted() -> None:
    args = AppArgs(models=MODELS, fallbacks={"a": ["b", "first_stage"], "b": ["c"]})
    assert args.fallbacks == {"a": ["b", "first_stage"], "b": ["c"]}
    assert AppArgs(models=MODELS).fallbacks == {}


@pytest.mark.parametrize(
    ("fallbacks", "message"),
    [
        ({"x": ["a"]}, "fallbacks.x: 'x' is not in models"),
        ({"a": ["x"]}, "fallbacks.a: 'x' is not in models"),
        ({"a": []}, "fallbacks.a is empty"),
        ({"a": ["a"]}, "cannot fall back to itself"),
        ({"a": ["b", "b"]}, "names a model twice"),
        ({"a": ["first_stage", "b"]}, "can only be the last"),
        ({"a": ["b"], "b": ["c"], "c": ["a"]}, "cycle: a -> b -> c -> a"),
    ],
)
def test_fallbacks_config_is_validated(fallbacks: dict[str, list[str]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AppArgs(models=MODELS, fallbacks=fallbacks)


def test_serving_page_fallback_and_tracing_examples_validate() -> None:
    import re
    from pathlib import Path

    import yaml

    page = (Path(__file__).resolve().parents[2] / "docs" / "serving.md").read_text(
        encoding="utf-8")
    section = page[page.index("## Fallbacks"):page.index("## Metrics")]
    fallback_yaml, tracing_yaml = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    args = AppArgs.model_validate({**yaml.safe_load(fallback_yaml),
                                   **yaml.safe_load(tracing_yaml)})
    assert args.fallbacks == {"cohere": ["fast", FIRST_STAGE]}
    assert args.tracing.otlp_endpoint == "http://otel-collector:4318"
