"""A vision reranker (the tiny Qwen3-VL stand-in) served by the real Ray Serve app: Jina m0's
``documents: [{"image": base64}]`` on /v1/rerank and the same objects on /v2/rerank rank a
page image and a text passage as the library does; hostile images get 4xx; a text-only model
refuses image documents naming the field."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reranker import Reranker
from reranker.testing.families import qwen3_vl as kit
from tests.integration.ray_fixtures import RayCluster, deploy_app

pytestmark = pytest.mark.integration

PAGE = kit.make_image(70, 50, seed=2)
B64 = base64.b64encode(PAGE).decode()
QUERY = "what grows here"


@pytest.fixture(scope="module")
def vision_app(ray_cluster: RayCluster, model_dirs: dict[str, Path],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    from ray import serve

    from deployments.serve.app import build_app

    root = tmp_path_factory.mktemp("serve-vision")
    visual = {"type": "custom", "model_id": str(kit.make_checkpoint(root / "vl")),
              "max_length": 512, "cache_dir": str(root / "cache")}
    small = {"num_cpus": 0.25}
    args = {
        "models": {"visual": visual,
                   "tiny": {"type": "custom", "model_id": str(model_dirs["bert1"])}},
        "default_model": "visual", "warm_models": ["visual"], "chunk_size": 2,
        "deployments": {
            "ingress": {"num_replicas": 1, "ray_actor_options": small},
            "custom": {"num_replicas": 1, "ray_actor_options": small,
                       "max_models_per_replica": 2},
        },
    }
    deploy_app(build_app(args), name="vision", route_prefix="/vision")
    try:
        yield f"{ray_cluster.http_url}/vision", visual
    finally:
        serve.delete("vision")


def test_a_page_image_and_a_passage_rank_as_in_the_library(
        vision_app: tuple[str, dict[str, Any]]) -> None:
    url, config = vision_app
    docs = [{"image": B64}, {"text": "a passage about growth"},
            {"text": "caption", "image": "data:image/png;base64," + B64}]
    with httpx.Client(base_url=url, timeout=120) as client:
        v1 = client.post("/v1/rerank", json={"model": "visual", "query": QUERY,
                                             "documents": docs, "return_documents": True})
        v2 = client.post("/v2/rerank", json={"model": "visual", "query": QUERY,
                                             "documents": docs})
    with Reranker(config) as rr:
        want = {r.index: r.score for r in rr.rerank(QUERY, [
            {"image": PAGE}, "a passage about growth", {"text": "caption", "image": PAGE}])}
    for answer in (v1, v2):
        assert answer.status_code == 200, answer.text
        got = {r["index"]: r["relevance_score"] for r in answer.json()["results"]}
        assert got == pytest.approx(want, abs=1e-5)


def test_hostile_and_misplaced_images_are_4xx(vision_app: tuple[str, dict[str, Any]]) -> None:
    url, _ = vision_app
    bomb = base64.b64encode(kit.png_header(50_000, 50_000)).decode()
    cases = [
        ("visual", [{"image": bomb}], 413, "documents[0].image"),
        ("visual", ["a", {"image": "not base64 !"}], 400, "documents[1].image"),
        ("visual", [{"image": "http://127.0.0.1:9/x.png"}], 400, "documents[0].image"),
        ("tiny", ["a", "b", {"image": B64}], 400, "documents[2].image"),
    ]
    with httpx.Client(base_url=url, timeout=120) as client:
        for model, docs, status, param in cases:
            r = client.post("/v1/rerank", json={"model": model, "query": QUERY,
                                                "documents": docs})
            assert r.status_code == status, (model, r.text)
            assert r.json()["error"]["param"] == param


def test_the_visual_preset_downloads_and_ranks_images(hub: Any, tmp_path: Path) -> None:
    """``Reranker("visual")`` fetches the repo (preprocessor_config.json included) through the
    Hub stand-in and ranks a page image and a passage as the reference does."""
    from reranker.presets import PRESETS

    preset = PRESETS["visual"]
    folder = kit.make_checkpoint(tmp_path / "vl", seed=5)
    hub.add_repo(preset.repo_id, {str(p.relative_to(folder)): p.read_bytes()
                                  for p in folder.rglob("*") if p.is_file()},
                 revision=preset.revision)
    docs: list[Any] = [{"image": PAGE}, "a passage about growth"]
    with Reranker({"type": "preset", "name": "visual", "max_length": 512,
                   "cache_dir": str(tmp_path / "cache")}) as rr:
        got = {r.index: r.score for r in rr.rerank(QUERY, docs, raw_scores=True)}
    want = kit.reference_scores(folder, QUERY, docs)
    assert [got[0], got[1]] == pytest.approx(list(want), abs=1e-4)
    assert hub.count("GET", preset.repo_id, "preprocessor_config.json") == 1
