"""Fallback through the real Ray Serve app: a Cohere-format provider model that rate-limits
falls back to a tiny local ONNX model, seen through the official Cohere SDK and raw HTTP.

The app is small and its own: ``cohere`` (the loopback provider stand-in, no retries) with the
chain ``[tiny, first_stage]``, and ``tiny``. Scores of the fallback are checked against the
in-process library on the same config.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.provider_standins import ProviderStandIn
from tests.integration.ray_fixtures import RayCluster, deploy_app, wait_for

pytestmark = pytest.mark.integration

QUERY = "capital of France"
DOCS = ["Paris is the capital of France", "the cat sat on the mat", "Berlin is in Germany"]
TOL = 1e-5


@dataclass
class Served:
    url: str
    metrics_url: str
    models: dict[str, Any]


@pytest.fixture(scope="module")
def served(ray_cluster: RayCluster, model_dirs: dict[str, Path],
           provider_standin: ProviderStandIn) -> Iterator[Served]:
    from ray import serve

    from deployments.serve.app import build_app
    from deployments.serve.args import AppArgs

    small = {"num_cpus": 0.25}
    args = AppArgs.model_validate({
        "models": {
            "cohere": {"type": "llm", "provider": "cohere", "model": "rerank-test",
                       "base_url": provider_standin.base_url("cohere"),
                       "api_key_env": "STANDIN_KEY", "max_retries": 0, "timeout_s": 1.0},
            "tiny": {"type": "custom", "model_id": str(model_dirs["bert1"])},
        },
        "default_model": "cohere",
        "fallbacks": {"cohere": ["tiny", "first_stage"]},
        "deployments": {
            "ingress": {"num_replicas": 1, "ray_actor_options": small},
            "custom": {"num_replicas": 1, "ray_actor_options": small},
            "llm": {"num_replicas": 1, "ray_actor_options": {
                "num_cpus": 0.25,
                "runtime_env": {"env_vars": {"STANDIN_KEY": provider_standin.api_key}}}},
        },
    })
    deploy_app(build_app(args), name="fallback", route_prefix="/fallback")
    try:
        yield Served(f"{ray_cluster.http_url}/fallback", ray_cluster.metrics_url,
                     dict(args.models))
    finally:
        serve.delete("fallback")


@pytest.fixture
def standin(provider_standin: ProviderStandIn) -> Iterator[ProviderStandIn]:
    provider_standin.reset()
    yield provider_standin
    provider_standin.reset()


def _tiny_reference(served: Served) -> dict[int, float]:
    from reranker import Reranker

    with Reranker(served.models["tiny"]) as rr:
        return {r.index: r.score for r in rr.rerank(QUERY, DOCS)}


def test_rate_limited_cohere_model_falls_back_to_tiny_via_the_cohere_sdk(
        served: Served, standin: ProviderStandIn) -> None:
    import cohere

    co = cohere.ClientV2(api_key="unused", base_url=served.url, timeout=30)
    standin.rate_limit(1)
    response = co.rerank(model="cohere", query=QUERY, documents=DOCS)
    assert [r.provider for r in standin.requests] == ["cohere"]  # it was asked, and said 429
    expected = _tiny_reference(served)
    assert {r.index: r.relevance_score for r in response.results} == pytest.approx(
        expected, abs=TOL)
    fallback = response.meta.model_extra["fallback"]  # type: ignore[union-attr]
    assert fallback["model"] == "tiny" and fallback["reason"] == "rate_limited"
    assert fallback["tried"] == [{"model": "cohere", "reason": "rate_limited", "status": 429}]

    # Once the provider answers again, it answers, and nothing says fallback.
    healthy = co.rerank(model="cohere", query=QUERY, documents=DOCS)
    assert "fallback" not in (healthy.meta.model_extra or {})  # type: ignore[union-attr]
    assert len(standin.requests) == 2


def test_fallback_header_and_metric(served: Served, standin: ProviderStandIn) -> None:
    standin.server_error(1)
    r = httpx.post(f"{served.url}/rerank", json={"model": "cohere", "query": QUERY,
                                                 "texts": DOCS}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["x-reranker-fallback"] == "cohere->tiny (failed)"
    assert {x["index"]: x["score"] for x in r.json()} == pytest.approx(
        _tiny_reference(served), abs=TOL)

    def counted() -> list[dict[str, str]] | None:
        try:
            text = httpx.get(served.metrics_url, timeout=5).text
        except httpx.HTTPError:
            return None
        lines = [ln for ln in text.splitlines() if ln.startswith("ray_reranker_fallbacks_total{")]
        return [ln for ln in lines if 'reason="failed"' in ln] or None

    lines = wait_for(counted, timeout_s=60, interval_s=1, what="the fallback metric")
    assert any('model="cohere"' in ln and 'fallback="tiny"' in ln for ln in lines)


def test_an_invalid_request_is_400_and_reaches_no_model(
        served: Served, standin: ProviderStandIn) -> None:
    import cohere

    co = cohere.ClientV2(api_key="unused", base_url=served.url, timeout=30)
    with pytest.raises(cohere.BadRequestError):
        co.rerank(model="cohere", query="   ", documents=DOCS)
    assert standin.requests == []
