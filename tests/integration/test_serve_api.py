"""The Ray Serve app over real HTTP: shapes, SDKs, routing, fan-out, batching and errors.

One app is deployed for the module (``serve.run`` once): plugin models (by import path, from
``tests/integration/serve_plugins.py``), two tiny local ONNX models and a Cohere-format provider
model pointed at the loopback stand-in. Scores are checked against the in-process library on the
same configs.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.provider_standins import ProviderStandIn
from tests.integration.ray_fixtures import RayCluster, deploy_app, wait_for
from tests.integration.serve_plugins import POISON

pytestmark = pytest.mark.integration

KEY = "serve-test-key-0001"
KEYS_ENV = "RERANKER_SERVE_TEST_KEYS"
PLUGINS = "tests.integration.serve_plugins"
CHUNK = 8
TOL = 1e-5

DOCS = [
    "Paris is the capital of France",
    "the cat sat on the mat",
    "Berlin is the capital of Germany",
    "France has a large population and Paris is its capital city",
    "bread and cheese",
    "a ship on the ocean",
]


@dataclass
class Served:
    url: str
    models: dict[str, Any]
    metrics_url: str

    def client(self, key: str | None = KEY, **kw: Any) -> httpx.Client:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)

    def aclient(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"authorization": f"Bearer {KEY}"},
                                 timeout=30)

    def reference(self, model: str, query: str, docs: list[str]) -> list[Any]:
        from reranker import Reranker

        with Reranker(self.models[model]) as rr:
            return rr.rerank(query, docs)


def _app_args(model_dirs: dict[str, Path], standin: ProviderStandIn) -> dict[str, Any]:
    small = {"num_cpus": 0.25}
    return {
        "models": {
            "overlap": {"type": "plugin", "name": f"{PLUGINS}:word_overlap"},
            "reversed": {"type": "plugin", "name": f"{PLUGINS}:reversed_overlap"},
            "slow": {"type": "plugin", "name": f"{PLUGINS}:SlowScorer",
                     "options": {"delay_s": 0.4}},
            "slow_timeout": {"type": "plugin", "name": f"{PLUGINS}:SlowScorer",
                             "options": {"delay_s": 5.0, "delay_marker": "sleep"},
                             "timeout_s": 0.5},
            "poisoned": {"type": "plugin", "name": f"{PLUGINS}:poisoned"},
            "tiny": {"type": "custom", "model_id": str(model_dirs["bert1"])},
            "tiny2": {"type": "custom", "model_id": str(model_dirs["xlmr2"])},
            "chunky": {"type": "custom", "model_id": str(model_dirs["bert1"]), "max_length": 48,
                       "long_documents": "chunk", "chunk_overlap": 8, "max_chunks_per_doc": 50,
                       "min_score": 0.7},
            "cohere": {"type": "llm", "provider": "cohere", "model": "rerank-test",
                       "base_url": standin.base_url("cohere"), "api_key_env": "STANDIN_KEY",
                       "max_retries": 0, "timeout_s": 1.0},
            "nim": {"type": "llm", "provider": "nvidia_nim", "model": "nvidia/nv-rerank-test",
                    "base_url": standin.base_url("nvidia_nim"), "api_key_env": "STANDIN_KEY",
                    "max_retries": 0, "timeout_s": 1.0},
        },
        "default_model": "overlap",
        "warm_models": ["overlap", "slow", "tiny"],
        "chunk_size": CHUNK,
        "limits": {"max_documents": 200, "max_document_chars": 2000, "max_query_chars": 500,
                   "max_body_bytes": 65536},
        "api_key_env": KEYS_ENV,
        "debug": True,
        "tei_auto_truncate": False,  # TEI's own default: the truncation test relies on it
        "deployments": {
            "ingress": {"num_replicas": 1, "ray_actor_options": small},
            "plugin": {"num_replicas": 2, "ray_actor_options": small, "max_ongoing_requests": 4,
                       "max_queued_requests": 8, "max_models_per_replica": 5,
                       "batching": {"max_batch_size": 4, "batch_wait_timeout_s": 0.01}},
            "custom": {"num_replicas": 1, "ray_actor_options": small, "max_ongoing_requests": 32,
                       "max_models_per_replica": 3,
                       "batching": {"max_batch_size": 16, "batch_wait_timeout_s": 0.05}},
            "llm": {"num_replicas": 1, "ray_actor_options": {
                "num_cpus": 0.25, "runtime_env": {"env_vars": {"STANDIN_KEY": standin.api_key}}}},
        },
    }


@pytest.fixture(scope="module")
def served(ray_cluster: RayCluster, model_dirs: dict[str, Path],
           provider_standin: ProviderStandIn) -> Iterator[Served]:
    from ray import serve

    from deployments.serve.app import build_app
    from deployments.serve.args import AppArgs

    os.environ[KEYS_ENV] = f"{KEY},another-key"
    try:
        args = AppArgs.model_validate(_app_args(model_dirs, provider_standin))
        deploy_app(build_app(args), name="main")
        yield Served(ray_cluster.http_url, dict(args.models), ray_cluster.metrics_url)
    finally:
        os.environ.pop(KEYS_ENV, None)
        serve.delete("main")


@pytest.fixture
def client(served: Served) -> Iterator[httpx.Client]:
    with served.client() as c:
        yield c


@pytest.fixture
def standin(provider_standin: ProviderStandIn) -> Iterator[ProviderStandIn]:
    provider_standin.reset()
    yield provider_standin
    provider_standin.reset()


def _error(response: httpx.Response, status: int, kind: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param"}
    if kind is not None:
        assert body["error"]["type"] == kind, body
    return dict(body["error"])


# --- shapes ----------------------------------------------------------------------------------


def test_v1_rerank_cohere_shape(client: httpx.Client, served: Served) -> None:
    r = client.post("/v1/rerank", json={"model": "tiny", "query": "capital of France",
                                        "documents": DOCS, "top_n": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    # usage: Jina's token count, as this route is Jina's too (a local model counts tokens).
    assert set(body) == {"id", "model", "results", "meta", "usage"} and body["model"] == "tiny"
    assert [set(x) for x in body["results"]] == [{"index", "relevance_score"}] * 3
    full = served.reference("tiny", "capital of France", DOCS)
    assert body["usage"] == {"total_tokens": full.usage.tokens}
    ref = full[:3]
    assert [x["index"] for x in body["results"]] == [x.index for x in ref]
    for got, want in zip(body["results"], ref, strict=True):
        assert got["relevance_score"] == pytest.approx(want.score, abs=TOL)


def test_v1_rerank_jina_shape_objects_and_rank_fields(client: httpx.Client) -> None:
    docs = [{"title": "cats", "text": "the cat sat"}, {"title": "Paris", "text": "France capital"}]
    r = client.post("/v1/rerank", json={"query": "paris france", "documents": docs,
                                        "return_documents": True})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["index"] for x in results] == [1, 0]
    assert results[0]["document"] == docs[1]  # objects come back as given
    r = client.post("/v1/rerank", json={"query": "cats", "documents": docs,
                                        "rank_fields": ["title"], "top_n": 1})
    assert r.json()["results"][0]["index"] == 0
    r = client.post("/v1/rerank", json={"model": "overlap", "query": "cat",
                                        "documents": ["a cat", "a dog"], "return_documents": True})
    assert r.json()["results"][0]["document"] == {"text": "a cat"}


def test_v2_rerank_cohere_v2_shape(client: httpx.Client, served: Served) -> None:
    r = client.post("/v2/rerank", json={"model": "tiny2", "query": "capital of France",
                                        "documents": DOCS, "top_n": 10,
                                        "max_tokens_per_doc": 4096})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id", "results", "meta"}
    assert len(body["results"]) == len(DOCS)  # top_n larger than the set returns all
    ref = served.reference("tiny2", "capital of France", DOCS)
    assert [x["index"] for x in body["results"]] == [x.index for x in ref]
    assert [x["relevance_score"] for x in body["results"]] == pytest.approx(
        [x.score for x in ref], abs=TOL)


def test_tei_rerank_bare_list_and_raw_scores(client: httpx.Client, served: Served) -> None:
    r = client.post("/rerank", json={"query": "capital of France", "texts": DOCS,
                                     "return_text": True})
    assert r.status_code == 200, r.text
    out = r.json()
    assert isinstance(out, list) and set(out[0]) == {"index", "score", "text"}
    assert out[0]["text"] == DOCS[out[0]["index"]]
    assert [x["score"] for x in out] == sorted((x["score"] for x in out), reverse=True)
    raw = client.post("/rerank", json={"model": "tiny", "query": "capital of France",
                                       "texts": DOCS, "raw_scores": True}).json()
    from reranker import Reranker

    with Reranker(served.models["tiny"]) as rr:
        ref = rr.rerank("capital of France", DOCS, raw_scores=True)
    assert [x["index"] for x in raw] == [x.index for x in ref]
    assert [x["score"] for x in raw] == pytest.approx([x.score for x in ref], abs=TOL)
    assert any(x["score"] < 0 or x["score"] > 1 for x in raw)  # logits, not probabilities


def test_models_health_ready_and_docs(served: Served, client: httpx.Client) -> None:
    models = client.get("/v1/models").json()
    assert models["default_model"] == "overlap"
    variants = {m["id"]: m["variant"] for m in models["data"]}
    assert variants["overlap"] == "plugin" and variants["tiny"] == "custom"
    assert variants["cohere"] == "llm"
    with served.client(key=None) as anonymous:  # probes and docs need no key
        assert anonymous.get("/health").json() == {"status": "ok"}
        ready = anonymous.get("/ready")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        assert anonymous.get("/docs").status_code == 200
        redoc = anonymous.get("/redoc")
        assert redoc.status_code == 200 and "/docs-assets/redoc.standalone.js" in redoc.text
        asset = anonymous.get("/docs-assets/redoc.standalone.js")  # served offline, no key
        assert asset.status_code == 200 and "javascript" in asset.headers["content-type"]
        paths = anonymous.get("/openapi.json").json()["paths"]
    assert {"/v1/rerank", "/v2/rerank", "/rerank", "/infinity/rerank", "/v1/models"} <= set(paths)


# --- the Cohere SDK, unchanged -----------------------------------------------------------------


def test_cohere_sdk_v1(served: Served) -> None:
    import cohere

    co = cohere.Client(api_key=KEY, base_url=served.url, timeout=30)
    resp = co.rerank(model="overlap", query="capital of France", documents=DOCS, top_n=2,
                     return_documents=True)
    assert [r.index for r in resp.results] == [0, 2]  # ties keep input order
    assert resp.results[0].document is not None
    assert resp.results[0].document.text == DOCS[0]
    assert 0.0 < resp.results[1].relevance_score < 1.0
    with pytest.raises(cohere.NotFoundError):
        co.rerank(model="no-such-model", query="q", documents=["a"])


def test_cohere_sdk_v2(served: Served) -> None:
    import cohere

    co = cohere.ClientV2(api_key=KEY, base_url=served.url, timeout=30)
    resp = co.rerank(model="tiny", query="capital of France", documents=DOCS, top_n=3)
    full = served.reference("tiny", "capital of France", DOCS)
    ref = full[:3]
    assert [r.index for r in resp.results] == [x.index for x in ref]
    assert [r.relevance_score for r in resp.results] == pytest.approx(
        [x.score for x in ref], abs=TOL)
    # Usage as Cohere reports it: search units, and the tokens the replicas scored (the same
    # count as the library's on the same config, over every fan-out chunk).
    assert resp.meta is not None and resp.meta.billed_units is not None
    assert resp.meta.billed_units.search_units == 1
    assert resp.meta.tokens is not None and full.usage is not None
    assert resp.meta.tokens.input_tokens == full.usage.tokens > 0
    units = co.rerank(model="tiny", query="q", documents=["d"] * 101)
    assert units.meta is not None and units.meta.billed_units is not None
    assert units.meta.billed_units.search_units == 2
    plugin = co.rerank(model="overlap", query="q", documents=["d"])
    assert plugin.meta is not None and plugin.meta.billed_units is not None
    assert plugin.meta.billed_units.search_units == 1
    assert plugin.meta.tokens is None  # a plugin does not count tokens
    from reranker import Reranker

    with Reranker(served.models["tiny"]) as rr:
        capped_ref = rr.rerank("capital of France", DOCS, max_tokens_per_doc=2)
    capped = co.rerank(model="tiny", query="capital of France", documents=DOCS,
                       max_tokens_per_doc=2)
    assert {r.index: r.relevance_score for r in capped.results} == pytest.approx(
        {x.index: x.score for x in capped_ref}, abs=TOL)
    with pytest.raises(cohere.BadRequestError):  # a plugin cannot apply it: refused, not ignored
        co.rerank(model="overlap", query="q", documents=["a"], max_tokens_per_doc=2)
    with pytest.raises(cohere.UnauthorizedError):
        cohere.ClientV2(api_key="wrong", base_url=served.url).rerank(
            model="tiny", query="q", documents=["a"])


def test_rerank_with_documents_infinity_and_vllm_shape(client: httpx.Client, served: Served
                                                      ) -> None:
    ref = served.reference("tiny", "capital of France", DOCS)
    r = client.post("/rerank", json={"model": "tiny", "query": "capital of France",
                                     "documents": DOCS, "top_n": 3, "return_documents": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "rerank" and body["model"] == "tiny"
    assert [x["index"] for x in body["results"]] == [x.index for x in ref[:3]]
    assert [x["relevance_score"] for x in body["results"]] == pytest.approx(
        [x.score for x in ref[:3]], abs=TOL)
    assert [x["document"] for x in body["results"]] == [{"text": DOCS[x.index]} for x in ref[:3]]
    infinity = client.post("/infinity/rerank", json={"model": "tiny", "query": "capital of France",
                                                     "documents": DOCS, "return_documents": True})
    assert [x["document"] for x in infinity.json()["results"]] == [DOCS[x.index] for x in ref]


def _litellm() -> Any:
    # litellm fetches a model cost map from the internet at import unless told to use its own.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return pytest.importorskip("litellm", reason="litellm is in the 'test' extra")


@pytest.mark.parametrize(
    ("provider", "base_path"),
    [("hosted_vllm", ""), ("together_ai", ""), ("infinity", "/infinity"), ("cohere", "")],
)
def test_litellm_rerank_providers(served: Served, provider: str, base_path: str) -> None:
    # Regression: infinity/, hosted_vllm/ and together_ai/ send {query, documents, top_n} to
    # /rerank, which answered "texts: Field required".
    litellm = _litellm()
    ref = served.reference("tiny", "capital of France", DOCS)[:3]
    resp = litellm.rerank(model=f"{provider}/tiny", query="capital of France", documents=DOCS,
                          top_n=3, api_base=served.url + base_path, api_key=KEY)
    assert [r["index"] for r in resp.results] == [x.index for x in ref]
    assert [r["relevance_score"] for r in resp.results] == pytest.approx(
        [x.score for x in ref], abs=TOL)
    assert [r["document"]["text"] for r in resp.results] == [DOCS[x.index] for x in ref]
    with pytest.raises(litellm.NotFoundError, match="no-such-model"):
        litellm.rerank(model=f"{provider}/no-such-model", query="q", documents=["a"],
                       api_base=served.url + base_path, api_key=KEY)


def test_cohere_sdk_v1_billed_units_and_min_score(served: Served) -> None:
    import cohere

    co = cohere.Client(api_key=KEY, base_url=served.url, timeout=30)
    resp = co.rerank(model="tiny", query="capital of France", documents=DOCS,
                     request_options={"additional_body_parameters": {"min_score": 0.5}})
    ref = served.reference("tiny", "capital of France", DOCS)
    assert resp.meta is not None and resp.meta.billed_units is not None
    assert resp.meta.billed_units.search_units == 1
    assert [r.index for r in resp.results] == [x.index for x in ref if x.score >= 0.5]


def test_spans_and_configured_min_score(client: httpx.Client, served: Served) -> None:
    from reranker import Reranker
    from reranker.testing.textsamples import LONG_DOCUMENT

    docs = [LONG_DOCUMENT[:1900], DOCS[0], LONG_DOCUMENT[1000:2900], DOCS[1]] * 3  # 2 chunks
    with Reranker(served.models["chunky"]) as rr:
        ref = rr.rerank("capital of France", docs)
        every = rr.rerank("capital of France", docs, min_score=0.0)
    assert len(ref) < len(every)  # the configured min_score (0.7) cut something
    body = {"model": "chunky", "query": "capital of France", "documents": docs}
    plain = client.post("/v2/rerank", json=body).json()
    assert [x["index"] for x in plain["results"]] == [x.index for x in ref]
    assert all("span" not in x for x in plain["results"])
    asked = client.post("/v2/rerank", json={**body, "return_spans": True, "min_score": 0.0})
    results = asked.json()["results"]
    assert [(x["index"], tuple(x["span"])) for x in results] == [
        (x.index, x.span) for x in every]
    long_spans = [tuple(x["span"]) for x in results if x["index"] == 0]
    assert long_spans[0] != (0, len(docs[0]))  # a window inside the long document


# --- routing, fan-out, batching ----------------------------------------------------------------


def test_routing_by_model_name(client: httpx.Client, served: Served) -> None:
    docs = ["zero", "capital of France", "capital"]
    ranks = {}
    for model in ("overlap", "reversed", None):
        body = {"query": "capital of France", "documents": docs}
        if model:
            body["model"] = model
        r = client.post("/v1/rerank", json=body)
        assert r.status_code == 200, r.text
        ranks[model] = ([x["index"] for x in r.json()["results"]], r.json()["model"])
    assert ranks["overlap"] == ([1, 2, 0], "overlap")
    assert ranks["reversed"] == ([0, 2, 1], "reversed")
    assert ranks[None] == ([1, 2, 0], "overlap")  # the default model
    # Two local models multiplexed in one custom replica keep their own scores.
    for model in ("tiny", "tiny2", "tiny"):
        got = client.post("/v2/rerank", json={"model": model, "query": "capital of France",
                                              "documents": DOCS}).json()["results"]
        ref = served.reference(model, "capital of France", DOCS)
        assert [x["relevance_score"] for x in got] == pytest.approx(
            [x.score for x in ref], abs=TOL)


def test_provider_model_through_llm_deployment(client: httpx.Client, standin: ProviderStandIn
                                               ) -> None:
    r = client.post("/v2/rerank", json={"model": "cohere", "query": "capital of France",
                                        "documents": DOCS, "top_n": 2})
    assert r.status_code == 200, r.text
    assert [x["index"] for x in r.json()["results"]] == [0, 2]
    assert standin.requests and standin.requests[-1].provider == "cohere"
    assert "max_tokens_per_doc" not in standin.requests[-1].body
    # Cohere's own max_tokens_per_doc is passed on; fields it has no equivalent for are refused.
    r = client.post("/v2/rerank", json={"model": "cohere", "query": "capital of France",
                                        "documents": DOCS, "max_tokens_per_doc": 77})
    assert r.status_code == 200, r.text
    assert standin.requests[-1].body["max_tokens_per_doc"] == 77
    seen = len(standin.requests)
    err = _error(client.post("/rerank", json={"model": "cohere", "query": "q", "texts": ["a"],
                                              "truncate": False}), 400)
    assert err["param"] == "truncate" and len(standin.requests) == seen


def test_any_liter_llm_provider_serves_through_the_llm_deployment(
    client: httpx.Client, standin: ProviderStandIn
) -> None:
    from tests.integration.provider_standins import nim_logit

    query = "capital of France"
    r = client.post("/v2/rerank", json={"model": "nim", "query": query, "documents": DOCS})
    assert r.status_code == 200, r.text
    logits = [nim_logit(query, d) for d in DOCS]
    got = r.json()["results"]
    assert [x["index"] for x in got] == sorted(range(len(DOCS)), key=lambda i: -logits[i])
    # NIM answers logits: the API reports them as probabilities, like every other model.
    assert [x["relevance_score"] for x in got] == pytest.approx(
        [1 / (1 + math.exp(-logits[x["index"]])) for x in got], abs=1e-6)
    (seen,) = standin.requests
    assert seen.provider == "nvidia_nim" and seen.body["passages"][0] == {"text": DOCS[0]}
    # A provider's Retry-After decades ahead reaches the client bounded, as a 429.
    standin.rate_limit(1, retry_after="Fri, 31 Dec 9999 23:59:59 GMT")
    r = client.post("/v2/rerank", json={"model": "nim", "query": query, "documents": DOCS})
    assert r.status_code == 429, r.text
    assert 1 <= int(r.headers["retry-after"]) <= 3600


def test_fan_out_spreads_chunks_over_replicas_and_merges_in_order(
    client: httpx.Client, served: Served
) -> None:
    words = ["capital", "France", "Paris", "cat", "bread", "ocean", "river", "city"]
    docs = [" ".join(words[(i * 7 + j) % 8] for j in range(i % 5 + 1)) for i in range(8 * CHUNK)]
    query = "capital of France Paris city"
    body = {"model": "slow", "query": query, "documents": docs}
    r = client.post("/v1/rerank", json=body, headers={"x-reranker-debug": "1"})
    assert r.status_code == 200, r.text
    chunks = r.json()["meta"]["debug"]["chunks"]
    assert len(chunks) == 8 and all(c["documents"] == CHUNK for c in chunks)
    # Four calls at most per replica (max_ongoing_requests) and eight 0.4 s chunks at once:
    # both replicas must have served this one request.
    assert len({c["replica"] for c in chunks}) == 2, chunks
    ref = served.reference("overlap", query, docs)  # the same scorer, in one process
    got = r.json()["results"]
    assert [x["index"] for x in got] == [x.index for x in ref]
    assert [x["relevance_score"] for x in got] == pytest.approx([x.score for x in ref], abs=1e-12)


async def test_dynamic_batching_merges_concurrent_requests(served: Served) -> None:
    queries = [f"capital of {w}" for w in ("France", "Germany", "cats", "bread", "the ocean",
                                           "Paris", "Berlin", "ships", "cheese", "music")]

    async with served.aclient() as ac:
        responses = await asyncio.gather(*(
            ac.post("/v1/rerank", json={"model": "tiny", "query": q, "documents": DOCS},
                    headers={"x-reranker-debug": "1"})
            for q in queries
        ))
    chunks = [r.json()["meta"]["debug"]["chunks"][0] for r in responses]
    assert max(c["batch_size"] for c in chunks) > 1, chunks
    by_batch: dict[str, int] = {}
    for c in chunks:
        by_batch[c["batch_id"]] = by_batch.get(c["batch_id"], 0) + 1
    assert max(by_batch.values()) > 1  # requests with different queries shared one ONNX run
    for q, r in zip(queries, responses, strict=True):  # and each still gets its own scores
        ref = served.reference("tiny", q, DOCS)
        assert [x["index"] for x in r.json()["results"]] == [x.index for x in ref]
        assert [x["relevance_score"] for x in r.json()["results"]] == pytest.approx(
            [x.score for x in ref], abs=TOL)


async def test_batch_size_retuned_at_run_time(served: Served) -> None:
    from ray import serve

    handle = serve.get_deployment_handle("CustomScorer", app_name="main")
    await handle.reconfigure.remote({"max_batch_size": 2, "batch_wait_timeout_s": 0.05})
    try:
        async with served.aclient() as ac:
            responses = await asyncio.gather(*(
                ac.post("/v1/rerank", json={"model": "tiny", "query": f"q {i}",
                                            "documents": DOCS},
                        headers={"x-reranker-debug": "1"})
                for i in range(8)
            ))
        chunks = [r.json()["meta"]["debug"]["chunks"][0] for r in responses]
        assert {c["max_batch_size"] for c in chunks} == {2}
        assert max(c["batch_size"] for c in chunks) == 2
    finally:
        await handle.reconfigure.remote({"max_batch_size": 16, "batch_wait_timeout_s": 0.05})


def test_request_truncation_settings(client: httpx.Client, served: Served) -> None:
    """max_tokens_per_doc (v2), truncate and truncation_direction (TEI) are applied, not just
    accepted: scores equal the library's with the same settings, and a text that does not fit
    is a 413 naming it by its index in the request, across fan-out chunks."""
    from reranker import Reranker
    from reranker.testing.textsamples import LONG_DOCUMENT
    from reranker.types import Truncation

    query = "capital of France"
    long_doc = LONG_DOCUMENT[:1900]  # under the 2,000-character limit, over the window
    docs = [*DOCS, long_doc]
    with Reranker(served.models["tiny"]) as rr:
        capped = rr.rerank(query, docs, max_tokens_per_doc=4)
        plain = rr.rerank(query, docs)
        left = rr.backend.score(query, docs, Truncation(side="left"))  # type: ignore[call-arg]
        right = rr.backend.score(query, docs)

    r = client.post("/v2/rerank", json={"model": "tiny", "query": query, "documents": docs,
                                        "max_tokens_per_doc": 4})
    assert r.status_code == 200, r.text
    got = {x["index"]: x["relevance_score"] for x in r.json()["results"]}
    assert got == pytest.approx({x.index: x.score for x in capped}, abs=TOL)
    assert got != pytest.approx({x.index: x.score for x in plain}, abs=TOL)

    tei = {"model": "tiny", "query": query, "texts": docs, "raw_scores": True}
    cut = client.post("/rerank", json={**tei, "truncate": True})
    assert cut.status_code == 200, cut.text
    assert {x["index"]: x["score"] for x in cut.json()} == pytest.approx(
        dict(enumerate(right.tolist())), abs=TOL)
    from_left = client.post("/rerank", json={**tei, "truncate": True,
                                             "truncation_direction": "Left"})
    assert from_left.status_code == 200, from_left.text
    assert {x["index"]: x["score"] for x in from_left.json()} == pytest.approx(
        dict(enumerate(left.tolist())), abs=TOL)
    assert left[-1] != pytest.approx(right[-1], abs=1e-3)

    # truncate omitted: this app's tei_auto_truncate is false, so long texts are refused.
    for body in ({**tei}, {**tei, "truncate": False}):
        err = _error(client.post("/rerank", json=body), 413, "invalid_request_error")
        assert err["param"] == "texts" and f"texts[{len(DOCS)}]" in err["message"]
    spread = [*(DOCS * 2), long_doc]  # 13 texts: the long one is in the second chunk
    err = _error(client.post("/rerank", json={**tei, "texts": spread, "truncate": False}), 413)
    assert f"texts[{len(spread) - 1}]" in err["message"]
    fits = client.post("/rerank", json={**tei, "texts": DOCS, "truncate": False})
    assert fits.status_code == 200, fits.text

    # max_chunks_per_doc on a local model that truncates rather than chunks changes nothing.
    v1 = client.post("/v1/rerank", json={"model": "tiny", "query": query, "documents": docs,
                                         "max_chunks_per_doc": 1})
    assert [x["index"] for x in v1.json()["results"]] == [x.index for x in plain]


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/v1/rerank", {"query": "", "documents": ["a"]}, 400, "query"),
        ("/v1/rerank", {"query": "   ", "documents": ["a"]}, 400, "query"),
        ("/v1/rerank", {"query": "q", "documents": []}, 400, "documents"),
        ("/v1/rerank", {"query": "q", "documents": [{"title": "no text"}]}, 400, "documents[0]"),
        ("/v1/rerank", {"query": "q", "documents": [{"a": 1}], "rank_fields": ["b"]}, 400,
         "documents[0]"),
        ("/rerank", {"query": "q", "texts": ["a"], "truncation_direction": "left"}, 400,
         "truncation_direction"),
        ("/rerank", {"query": "q", "texts": ["a"], "truncate": False}, 400, "truncate"),
        ("/v2/rerank", {"query": "q", "documents": ["a"], "max_tokens_per_doc": 3}, 400,
         "max_tokens_per_doc"),
        ("/v2/rerank", {"query": "q", "documents": ["a"], "max_tokens_per_doc": 0}, 422,
         "max_tokens_per_doc"),
        ("/v1/rerank", {"model": "cohere", "query": "q", "documents": ["a"],
                        "max_chunks_per_doc": 2}, 400, "max_chunks_per_doc"),
        ("/v1/rerank", {"documents": ["a"]}, 422, "query"),
        ("/v1/rerank", {"query": "q", "documents": [1, 2]}, 422, None),
        ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": 0}, 422, "top_n"),
        ("/v2/rerank", {"query": "q", "documents": "not a list"}, 422, "documents"),
        ("/rerank", {"query": "q"}, 422, "texts"),
    ],
)
def test_invalid_requests(client: httpx.Client, path: str, body: dict[str, Any], status: int,
                          param: str | None) -> None:
    err = _error(client.post(path, json=body), status, "invalid_request_error")
    if param is not None:
        assert err["param"] is not None and err["param"].startswith(param), err


def test_malformed_json_is_400(client: httpx.Client) -> None:
    r = client.post("/v1/rerank", content=b'{"query": "q", "documents": [',
                    headers={"content-type": "application/json"})
    _error(r, 400, "invalid_request_error")


def test_unknown_model_and_route_are_404(client: httpx.Client) -> None:
    err = _error(client.post("/v1/rerank", json={"model": "gpt-9", "query": "q",
                                                 "documents": ["a"]}), 404, "not_found_error")
    assert "overlap" in err["message"]  # lists the configured models
    _error(client.get("/v2/nothing"), 404)


def test_limits_are_413(client: httpx.Client) -> None:
    too_many = {"query": "q", "documents": ["d"] * 201}
    assert _error(client.post("/v1/rerank", json=too_many), 413)["param"] == "documents"
    too_long = {"query": "q", "documents": ["ok", "x" * 2001]}
    assert _error(client.post("/v1/rerank", json=too_long), 413)["param"] == "documents[1]"
    long_query = {"query": "q" * 501, "documents": ["a"]}
    assert _error(client.post("/v2/rerank", json=long_query), 413)["param"] == "query"
    big = {"query": "q", "texts": ["y" * 1900] * 40}  # ~76 KB, over the 64 KiB body limit
    _error(client.post("/rerank", json=big), 413, "request_too_large")

    def chunked() -> Iterator[bytes]:  # no content-length: counted as it arrives
        yield b'{"query": "q", "documents": ["'
        for _ in range(40):
            yield b"z" * 2000
        yield b'"]}'

    _error(client.post("/v1/rerank", content=chunked()), 413, "request_too_large")


def test_api_key_is_required_and_compared(served: Served) -> None:
    body = {"query": "q", "documents": ["a"]}
    with served.client(key=None) as anonymous:
        r = anonymous.post("/v1/rerank", json=body)
        _error(r, 401, "authentication_error")
        assert r.headers["www-authenticate"] == "Bearer"
        _error(anonymous.get("/v1/models"), 401)
    with served.client(key="not-the-key") as wrong:
        _error(wrong.post("/v2/rerank", json=body), 401)
    with served.client(key="another-key") as second:  # every configured key works
        assert second.post("/v1/rerank", json=body).status_code == 200


async def test_full_queue_is_429(served: Served) -> None:
    # 2 replicas x 4 ongoing + 8 queued: 24 concurrent 0.4 s calls cannot all be accepted.
    async with served.aclient() as ac:
        responses = await asyncio.gather(*(
            ac.post("/v1/rerank", json={"model": "slow", "query": "q", "documents": ["q"]})
            for _ in range(24)
        ))
    statuses = [r.status_code for r in responses]
    assert 429 in statuses and 200 in statuses, statuses
    assert set(statuses) <= {200, 429}
    rejected = next(r for r in responses if r.status_code == 429)
    _error(rejected, 429, "rate_limit_error")
    assert int(rejected.headers["retry-after"]) >= 1


def test_failed_chunk_fails_the_request(client: httpx.Client) -> None:
    docs = [f"doc {i}" for i in range(4 * CHUNK)]
    docs[2 * CHUNK + 3] = f"a {POISON} document"
    err = _error(client.post("/v1/rerank", json={"model": "poisoned", "query": "doc",
                                                 "documents": docs}), 500, "backend_error")
    assert f"documents {2 * CHUNK}..{3 * CHUNK - 1} of {4 * CHUNK}" in err["message"]
    assert "poisoned document" in err["message"]


def test_backend_timeout_is_504(client: httpx.Client) -> None:
    err = _error(client.post("/v1/rerank", json={"model": "slow_timeout",
                                                 "query": "please sleep", "documents": ["a"]}),
                 504)
    assert err["type"] == "backend_timeout_error" and "timeout" in err["message"]


def test_provider_failures_are_502_and_504(client: httpx.Client, standin: ProviderStandIn
                                           ) -> None:
    body = {"model": "cohere", "query": "q", "documents": ["a", "b"]}
    standin.server_error(1)
    _error(client.post("/v2/rerank", json=body), 502, "provider_error")
    standin.reset()
    standin.slow(3.0, n=1)
    _error(client.post("/v2/rerank", json=body), 504, "provider_timeout_error")
    standin.reset()
    assert client.post("/v2/rerank", json=body).status_code == 200


# --- metrics (last: earlier tests have produced them by now) ---------------------------------


def _metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        labels, _, value = line[len(name) + 1:].rpartition("} ")
        tags = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        out.append((tags, float(value)))
    return out


def test_prometheus_metrics(served: Served, client: httpx.Client) -> None:
    client.post("/v1/rerank", json={"model": "tiny", "query": "q", "documents": DOCS})
    client.post("/v1/rerank", json={"model": "gpt-9", "query": "q", "documents": ["a"]})
    client.post("/v1/rerank", json={"query": "q", "documents": ["d"] * 201})
    with served.client(key=None) as anonymous:
        anonymous.post("/v1/rerank", json={"query": "q", "documents": ["a"]})

    def scraped() -> str | None:
        try:
            text = httpx.get(served.metrics_url, timeout=5).text
        except httpx.HTTPError:
            return None
        errors = {t["type"] for t, _ in _metric_samples(text, "ray_reranker_errors_total")}
        wanted = {"not_found_error", "authentication_error", "request_too_large"}
        scored = _metric_samples(text, "ray_reranker_batch_size_count")
        tokens = _metric_samples(text, "ray_reranker_tokens_scored_total")
        return text if wanted <= errors and scored and tokens else None

    text = wait_for(scraped, timeout_s=60, interval_s=1, what="metrics to be exported")
    requests = _metric_samples(text, "ray_reranker_requests_total")
    assert any(t["status"] == "404" and t["route"] == "/v1/rerank" for t, _ in requests)
    assert any(t["model"] == "tiny" and t["status"] == "200" and v >= 1 for t, v in requests)
    documents = _metric_samples(text, "ray_reranker_documents_scored_total")
    assert any(t["model"] == "tiny" and v >= len(DOCS) for t, v in documents)
    for name in ("ray_reranker_batch_size_count", "ray_reranker_batch_pairs_count",
                 "ray_reranker_queue_wait_s_count", "ray_reranker_inference_s_count"):
        samples = _metric_samples(text, name)
        assert any(t["model"] == "tiny" and t["deployment"] == "CustomScorer" and v >= 1
                   for t, v in samples), name
    assert _metric_samples(text, "ray_reranker_request_latency_s_count")
    tokens = _metric_samples(text, "ray_reranker_tokens_scored_total")
    # The key is its position in the configuration, never the key itself.
    assert any(t["model"] == "tiny" and t["key"] == "key0" and v > 0 for t, v in tokens)
    assert KEY not in text


def test_ingress_reads_the_proxy_host_for_its_exposure_warning(served: Served) -> None:
    # The ingress asks Serve's controller which host the proxies bind (a private Ray API):
    # check that it still answers on the pinned Ray, so the warning is not silently skipped.
    from deployments.serve.exposure import serve_http_host

    assert serve_http_host() == "127.0.0.1"


def test_readme_metric_names_are_what_ray_serves(served: Served, client: httpx.Client) -> None:
    # Regression: the README listed reranker_requests_total and friends, which Ray exports as
    # ray_reranker_*, so PromQL copied from it matched nothing.
    import ray

    from deployments.serve.metrics import HISTOGRAMS, exported_name

    # The metrics table moved from the README to the docs site's Serving page.
    readme = (Path(__file__).resolve().parents[2] / "docs" / "serving.md").read_text(
        encoding="utf-8")
    listed = sorted(set(re.findall(r"`(ray_reranker_[a-z_]+)`", readme)))
    assert len(listed) == 10, listed
    # This app has no fallback chain: tests/integration/test_serve_fallback.py scrapes that one.
    fallbacks = "ray_reranker_fallbacks_total"
    expected = [n for n in listed if n != fallbacks]
    client.post("/v1/rerank", json={"model": "tiny", "query": "q", "documents": DOCS})
    client.post("/v1/rerank", json={"model": "gpt-9", "query": "q", "documents": ["a"]})
    histograms = {exported_name(h) for h in HISTOGRAMS}

    def series(name: str) -> str:
        return f"{name}_count" if name in histograms else name

    def scraped() -> str | None:
        try:
            text = httpx.get(served.metrics_url, timeout=5).text
        except httpx.HTTPError:
            return None
        return text if all(_metric_samples(text, series(n)) for n in expected) else None

    text = wait_for(scraped, timeout_s=60, interval_s=1, what="every README metric exported")
    families = set(re.findall(r"^# TYPE (ray_reranker_\w+) ", text, flags=re.M))
    assert set(expected) <= families <= set(listed), (families, listed)
    # The README's way of finding the port finds the one this cluster exports on.
    assert "n['MetricsExportPort']" in readme
    ports = {int(n["MetricsExportPort"]) for n in ray.nodes() if n["Alive"]}
    assert int(served.metrics_url.rsplit(":", 1)[1].split("/")[0]) in ports
