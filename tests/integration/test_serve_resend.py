"""Resends never replay billed work: provider calls counted per client request.

Regression for issue 21 item 5: the proxy middleware resent a request whose ingress died before
answering up to 3 times, and the ingress retried a chunk whose scorer replica died, whatever the
model; for a model behind a paid API each replay is another billed call. Now a model that runs
locally is resent (and its lost chunk retried), and any other model, or one whose fallback chain
reaches one, is not: the client gets a 503 saying so, after exactly one provider call.

The path is the real one except for Ray: the proxy middleware, a stand-in for Serve's proxy
whose ingress replica dies after its work and before its answer, the real ingress app, and
scorer handles (``serve_fakes.FakeScorer``) whose API model calls the loopback Cohere stand-in.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from ray.exceptions import ActorDiedError

from deployments.serve.http_api import build_api
from deployments.serve.proxy_middleware import IngressRetryMiddleware
from tests.integration.provider_standins import ProviderStandIn
from tests.unit.serve_fakes import FakeScorer, ScoreCall, overlap_scores, service, settings

pytestmark = pytest.mark.integration


@pytest.fixture
def provider(provider_standin: ProviderStandIn) -> Iterator[ProviderStandIn]:
    provider_standin.reset()
    yield provider_standin
    provider_standin.reset()


def _models(provider: ProviderStandIn) -> dict[str, Any]:
    return {
        "cohere": {"type": "llm", "provider": "cohere", "model": "rerank-v3.5",
                   "base_url": provider.base_url("cohere")},
        "local": {"type": "custom", "model_id": "/models/tiny"},
        "local-or-cohere": {"type": "custom", "model_id": "/models/other"},
    }


def _calls_provider(provider: ProviderStandIn, *, lose_replica: bool = False) -> Any:
    async def behaviour(call: ScoreCall, attempt: int) -> list[float]:
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.post(
                provider.route("cohere"),
                headers={"Authorization": f"Bearer {provider.api_key}"},
                json={"model": "rerank-v3.5", "query": call.query, "documents": call.texts})
        r.raise_for_status()
        if lose_replica and attempt == 0:
            raise ActorDiedError()  # the replica died after the provider answered
        scores = [0.0] * len(call.texts)
        for result in r.json()["results"]:
            scores[result["index"]] = result["relevance_score"]
        return scores

    return behaviour


def _local(*, lose_replica: bool = False) -> Any:
    async def behaviour(call: ScoreCall, attempt: int) -> list[float]:
        if lose_replica and attempt == 0:
            raise ActorDiedError()
        return overlap_scores(call.query, call.texts)

    return behaviour


class _IngressDiesBeforeAnswering:
    """Serve's proxy app over an ingress replica that, on the first ``deaths`` attempts, does
    all its work (the provider called) and dies before its answer reaches the proxy."""

    def __init__(self, ingress: Any, deaths: int = 1) -> None:
        self.ingress = ingress
        self.deaths = deaths
        self.attempts = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.attempts += 1
        if self.attempts > self.deaths:
            await self.ingress(scope, receive, send)
            return

        async def lost(message: Any) -> None:
            pass

        await self.ingress(scope, receive, lost)


def _app(provider: ProviderStandIn, *, lose_replica: bool = False) -> tuple[Any, FakeScorer,
                                                                             FakeScorer]:
    api = FakeScorer(_calls_provider(provider, lose_replica=lose_replica))
    local = FakeScorer(_local(lose_replica=lose_replica))
    svc = service(settings(_models(provider), chunk_size=10,
                           fallbacks={"local-or-cohere": ("cohere",)}), llm=api, custom=local)
    return build_api(svc), api, local


async def _post(app: Any, model: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://proxy") as client:
        return await client.post("/v1/rerank", json={
            "model": model, "query": "river bank", "documents": ["the river bank", "a loan"]})


async def test_an_api_model_is_not_resent_after_its_ingress_died(
        provider: ProviderStandIn) -> None:
    ingress, _, _ = _app(provider)
    proxy = _IngressDiesBeforeAnswering(ingress)
    r = await _post(IngressRetryMiddleware(proxy, attempts=3, backoff_s=0.0), "cohere")
    assert len(provider.requests) == 1, [s.body for s in provider.requests]
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["type"] == "service_unavailable_error"
    assert "'cohere' is not run again on a resend" in err["message"]
    assert proxy.attempts == 2  # resent once, answered at once by a live ingress


async def test_a_local_model_is_resent_after_its_ingress_died(provider: ProviderStandIn) -> None:
    ingress, _, local = _app(provider)
    proxy = _IngressDiesBeforeAnswering(ingress, deaths=2)
    r = await _post(IngressRetryMiddleware(proxy, attempts=3, backoff_s=0.0), "local")
    assert r.status_code == 200, r.text
    assert [x["index"] for x in r.json()["results"]] == [0, 1]
    assert len(local.calls) == 3 and provider.requests == []


async def test_a_fallback_chain_reaching_an_api_is_not_resent(provider: ProviderStandIn) -> None:
    ingress, _, local = _app(provider)
    proxy = _IngressDiesBeforeAnswering(ingress)
    r = await _post(IngressRetryMiddleware(proxy, attempts=3, backoff_s=0.0), "local-or-cohere")
    assert r.status_code == 503, r.text
    assert len(local.calls) == 1 and provider.requests == []


async def test_a_lost_scorer_replica_is_retried_only_for_local_models(
        provider: ProviderStandIn) -> None:
    ingress, api, local = _app(provider, lose_replica=True)
    app = IngressRetryMiddleware(ingress, backoff_s=0.0)
    r = await _post(app, "cohere")
    assert r.status_code == 503 and r.json()["error"]["type"] == "service_unavailable_error", r.text
    assert len(provider.requests) == 1 and len(api.calls) == 1
    r = await _post(app, "local")
    assert r.status_code == 200, r.text
    assert len(local.calls) == 2
