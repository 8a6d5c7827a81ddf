"""A decoder reranker (the tiny Qwen3 stand-in) served by the real Ray Serve app, with the
``instruction`` extension field over HTTP.

Scores equal the in-process library's on the same config and instruction; fan-out chunks
carry the instruction; the model's configured instruction applies when a request gives none;
a model that takes no instruction answers 400 naming the field, from the ingress (a plugin:
its config says so) and from the replica (a ``custom`` encoder: only loading tells).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reranker import Reranker
from reranker.testing.families.qwen3_models import build_qwen3_reranker
from tests.integration.ray_fixtures import RayCluster, deploy_app

pytestmark = pytest.mark.integration

QUERY = "what is the capital of France"
DOCS = ["Paris is the capital of France", "a fish", "the capital city", "bread and cheese",
        "France has a large population and Paris is its capital city"]
CONFIGURED = "Given a question about Europe, retrieve passages that answer it"
ASKED = "Given a question, retrieve passages about fish"


@pytest.fixture(scope="module")
def decoder_app(ray_cluster: RayCluster, model_dirs: dict[str, Path],
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    from ray import serve

    from deployments.serve.app import build_app

    root = tmp_path_factory.mktemp("serve-decoder")
    qwen = {"type": "custom", "model_id": str(build_qwen3_reranker(root / "qwen3", seed=7)),
            "max_length": 160, "cache_dir": str(root / "cache"), "instruction": CONFIGURED}
    small = {"num_cpus": 0.25}
    args = {
        "models": {
            "qwen": qwen,
            "tiny": {"type": "custom", "model_id": str(model_dirs["bert1"])},
            "overlap": {"type": "plugin",
                        "name": "tests.integration.serve_plugins:word_overlap"},
        },
        "default_model": "qwen",
        "warm_models": ["qwen"],
        "chunk_size": 2,
        "debug": True,
        "deployments": {
            "ingress": {"num_replicas": 1, "ray_actor_options": small},
            "custom": {"num_replicas": 1, "ray_actor_options": small,
                       "max_models_per_replica": 2,
                       "batching": {"max_batch_size": 8, "batch_wait_timeout_s": 0.02}},
            "plugin": {"num_replicas": 1, "ray_actor_options": small},
        },
    }
    deploy_app(build_app(args), name="decoder", route_prefix="/decoder")
    try:
        yield f"{ray_cluster.http_url}/decoder", qwen
    finally:
        serve.delete("decoder")


def _library(config: dict[str, Any], instruction: str | None) -> dict[int, float]:
    with Reranker(config) as rr:
        return {r.index: r.score for r in rr.rerank(QUERY, DOCS, instruction=instruction)}


def test_v1_rerank_with_an_instruction_equals_the_library(
    decoder_app: tuple[str, dict[str, Any]],
) -> None:
    url, config = decoder_app
    with httpx.Client(base_url=url, timeout=60) as client:
        asked = client.post("/v1/rerank", headers={"x-reranker-debug": "1"}, json={
            "model": "qwen", "query": QUERY, "documents": DOCS, "instruction": ASKED})
        default = client.post("/v1/rerank", json={"model": "qwen", "query": QUERY,
                                                  "documents": DOCS})
        tei = client.post("/rerank", json={"model": "qwen", "query": QUERY, "texts": DOCS,
                                           "instruction": ASKED})
    assert asked.status_code == 200, asked.text
    got = {r["index"]: r["relevance_score"] for r in asked.json()["results"]}
    want = _library(config, ASKED)
    assert got == pytest.approx(want, abs=1e-5)
    chunks = asked.json()["meta"]["debug"]["chunks"]
    assert [c["documents"] for c in chunks] == [2, 2, 1]  # every chunk carried the instruction
    assert {c["backend"] for c in chunks} == {f"custom:{config['model_id']}"}
    # No instruction: the model's configured one, not the model card's default.
    assert default.status_code == 200, default.text
    got_default = {r["index"]: r["relevance_score"] for r in default.json()["results"]}
    assert got_default == pytest.approx(_library(config, None), abs=1e-5)
    assert got_default != pytest.approx(got, abs=1e-5)
    assert tei.status_code == 200, tei.text
    assert {r["index"]: r["score"] for r in tei.json()} == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("model", ["overlap", "tiny"])
def test_a_model_that_takes_no_instruction_is_400(decoder_app: tuple[str, dict[str, Any]],
                                                  model: str) -> None:
    url, _ = decoder_app
    with httpx.Client(base_url=url, timeout=60) as client:
        r = client.post("/v2/rerank", json={"model": model, "query": QUERY, "documents": DOCS,
                                            "instruction": ASKED})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "instruction" and "does not apply" in error["message"]
