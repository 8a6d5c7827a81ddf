"""A model whose checkpoint cannot be loaded, in the real Serve app: its requests get a clear
JSON error, and every other model keeps serving.

One broken checkpoint per family (``reranker.testing.families.all_families``, so later
families are covered too), each broken in a different way from the load matrix
(``tests/unit/test_model_load_hostile.py``), next to a healthy model on the same replica.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reranker.testing.families import all_families
from tests.integration.ray_fixtures import RayCluster, deploy_app
from tests.unit.test_model_load_hostile import CASES

pytestmark = pytest.mark.integration

KITS = all_families()
# One way of breaking it per family, cycling through kinds of damage.
DAMAGE = ["weights: cut in the data", "config: one layer fewer", "missing: tokenizer.json",
          "weights: header length 2**62", "config: zero heads", "weights: a tensor missing",
          "tokenizer: not JSON"]


def _broken(i: int) -> str:
    return f"broken-{KITS[i].NAME}"


@pytest.fixture(scope="module")
def url(ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory,
        model_dirs: dict[str, Path]) -> Iterator[str]:
    from ray import serve

    from deployments.serve.app import build_app
    from deployments.serve.args import AppArgs

    models: dict[str, Any] = {"good": {"type": "custom", "model_id": str(model_dirs["bert1"])}}
    for i, kit in enumerate(KITS):
        folder = kit.make_checkpoint(tmp_path_factory.mktemp(kit.NAME) / "model")
        CASES[DAMAGE[i % len(DAMAGE)]](folder)
        models[_broken(i)] = {"type": "custom", "model_id": str(folder),
                              "model_format": "safetensors"}
    args = AppArgs.model_validate({
        "models": models, "default_model": "good", "warm_models": ["good"],
        "deployments": {
            "ingress": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.25}},
            "custom": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.5},
                       "max_models_per_replica": 2},
        },
    })
    deploy_app(build_app(args), name="model-load")
    try:
        yield ray_cluster.http_url
    finally:
        serve.delete("model-load")


@pytest.mark.parametrize("i", range(len(KITS)), ids=[k.NAME for k in KITS])
def test_a_model_that_fails_to_load_is_a_json_500_and_others_keep_serving(url: str,
                                                                         i: int) -> None:
    body = {"query": "is the cat here?", "documents": ["a cat", "water"]}
    with httpx.Client(base_url=url, timeout=120) as client:
        for _ in range(2):  # a failed load is not cached as a success, nor kills the replica
            r = client.post("/v1/rerank", json={**body, "model": _broken(i)})
            assert r.status_code == 500, r.text
            err = r.json()["error"]
            assert err["type"] == "model_load_error", err
            assert _broken(i) in err["message"], err
            good = client.post("/v1/rerank", json={**body, "model": "good"})
            assert good.status_code == 200, good.text
        assert client.get("/ready").status_code == 200
        assert client.get("/v1/models").status_code == 200
