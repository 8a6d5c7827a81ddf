"""The Serve app under failure: a replica killed under traffic, and readiness while starting.

Clients always use timeouts: a request that hangs fails the test instead of the suite.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.ray_fixtures import RayCluster, deploy_app, wait_for

pytestmark = pytest.mark.integration

PLUGINS = "tests.integration.serve_plugins"
CLIENT_TIMEOUT_S = 20.0


def _replica_states(app: str, deployment: str) -> dict[str, int]:
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None or deployment not in status.deployments:
        return {}
    return {str(k.value if hasattr(k, "value") else k): v
            for k, v in status.deployments[deployment].replica_states.items()}


@pytest.fixture(scope="module")
def resilient_app(ray_cluster: RayCluster) -> Iterator[str]:
    from ray import serve

    from deployments.serve.app import build_app

    small = {"num_cpus": 0.25}
    args = {
        "models": {"overlap": {"type": "plugin", "name": f"{PLUGINS}:word_overlap"}},
        "chunk_size": 4,
        "debug": True,
        "deployments": {
            "ingress": {"num_replicas": 1, "ray_actor_options": small},
            "plugin": {"num_replicas": 2, "ray_actor_options": small,
                       "max_ongoing_requests": 8, "health_check_period_s": 1.0,
                       "batching": {"max_batch_size": 8}},
        },
    }
    deploy_app(build_app(args), name="resilience", route_prefix="/resilience")
    try:
        yield f"{ray_cluster.http_url}/resilience"
    finally:
        serve.delete("resilience")


def _traffic(url: str, stop: threading.Event, outcomes: list[Any]) -> None:
    docs = [f"doc {i} about capital cities" if i % 3 else f"doc {i}" for i in range(16)]
    with httpx.Client(timeout=CLIENT_TIMEOUT_S) as client:
        while not stop.is_set():
            started = time.monotonic()
            try:
                r = client.post(f"{url}/v1/rerank", json={"query": "capital", "documents": docs})
                outcomes.append((r.status_code, time.monotonic() - started))
            except httpx.HTTPError as exc:  # a timeout here means a request hung
                outcomes.append((type(exc).__name__, time.monotonic() - started))


def test_replica_killed_under_traffic_recovers(resilient_app: str) -> None:
    import ray

    url = resilient_app
    with httpx.Client(timeout=CLIENT_TIMEOUT_S) as client:
        debug = client.post(f"{url}/v1/rerank", headers={"x-reranker-debug": "1"},
                            json={"query": "q", "documents": ["q"] * 16}).json()
    victim = debug["meta"]["debug"]["chunks"][0]["replica"]

    stop = threading.Event()
    outcomes: list[Any] = []
    workers = [threading.Thread(target=_traffic, args=(url, stop, outcomes)) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        time.sleep(1.0)
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        time.sleep(4.0)
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=CLIENT_TIMEOUT_S + 5)
    assert not any(w.is_alive() for w in workers), "a client thread hung"
    statuses = [s for s, _ in outcomes]
    assert all(s in (200, 503) for s in statuses), [o for o in outcomes if o[0] not in (200, 503)]
    assert statuses.count(200) > len(statuses) // 2, statuses

    wait_for(lambda: _replica_states("resilience", "PluginScorer") == {"RUNNING": 2},
             timeout_s=90, what="the killed replica to be replaced")
    replicas: set[str] = set()
    with httpx.Client(timeout=CLIENT_TIMEOUT_S) as client:
        for _ in range(10):
            r = client.post(f"{url}/v1/rerank", headers={"x-reranker-debug": "1"},
                            json={"query": "capital", "documents": ["capital city"] * 16})
            assert r.status_code == 200, r.text
            replicas |= {c["replica"] for c in r.json()["meta"]["debug"]["chunks"]}
    assert victim not in replicas


def test_not_ready_is_503_until_models_are_loaded(ray_cluster: RayCluster) -> None:
    from ray import serve

    from deployments.serve.app import build_app

    args = {
        "models": {"sleepy": {"type": "plugin", "name": f"{PLUGINS}:SlowScorer",
                              "options": {"delay_s": 0.0, "load_delay_s": 8.0}}},
        "deployments": {
            "ingress": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.25}},
            "plugin": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.25}},
        },
    }
    url = f"{ray_cluster.http_url}/slowstart"
    deploy_app(build_app(args), name="slowstart", route_prefix="/slowstart", wait=False)
    try:
        with httpx.Client(timeout=CLIENT_TIMEOUT_S) as client:
            first = wait_for(lambda: _answered(client, f"{url}/ready"), timeout_s=60,
                             what="the ingress to answer")
            assert first.status_code == 503, first.text
            assert first.json()["error"]["type"] == "service_unavailable_error"
            assert first.json()["variants"] == {"plugin": False}
            early = client.post(f"{url}/v1/rerank", json={"query": "q", "documents": ["q"]})
            assert early.status_code == 503 and int(early.headers["retry-after"]) >= 1
            wait_for(lambda: client.get(f"{url}/ready").status_code == 200, timeout_s=60,
                     what="readiness")
            late = client.post(f"{url}/v1/rerank", json={"query": "q", "documents": ["q", "x"]})
            assert late.status_code == 200 and late.json()["results"][0]["index"] == 0
    finally:
        serve.delete("slowstart")


def _answered(client: httpx.Client, url: str) -> httpx.Response | None:
    try:
        r = client.get(url)
    except httpx.TransportError:
        return None
    return r if r.status_code != 404 else None  # 404: the proxy has no route for it yet


def test_restarted_ingress_does_not_refuse_while_scorers_are_busy(
    ray_cluster: RayCluster,
) -> None:
    # Regression: a restarted ingress starts with a cold readiness cache; its probe queued
    # behind a busy scorer past the probe's 2 s, and it answered 503 "still starting" while
    # the scorer was healthy. It now asks Serve's controller before refusing.
    import ray
    from ray import serve

    from deployments.serve.app import build_app

    args = {
        "models": {"slow": {"type": "plugin", "name": f"{PLUGINS}:SlowScorer",
                            "options": {"delay_s": 4.0, "delay_marker": "slowly"}}},
        "deployments": {
            "ingress": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.25}},
            "plugin": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.25},
                       "max_ongoing_requests": 1, "batching": {"max_batch_size": 1}},
        },
    }
    url = f"{ray_cluster.http_url}/restarted"
    deploy_app(build_app(args), name="restarted", route_prefix="/restarted")
    try:
        (ingress,) = [n for n in _serve_actor_names() if n.startswith(_RESTARTED_INGRESS)]
        ray.kill(ray.get_actor(ingress, namespace="serve"), no_restart=True)
        wait_for(lambda: [n for n in _serve_actor_names() if n.startswith(_RESTARTED_INGRESS)
                          and n != ingress]
                 and _replica_states("restarted", "RerankIngress") == {"RUNNING": 1},
                 timeout_s=60, what="a new ingress replica")
        scorer = serve.get_deployment_handle("PluginScorer", app_name="restarted")
        busy = scorer.options(multiplexed_model_id="slow").score.remote("slowly", ["x"])
        time.sleep(0.5)  # the busy call holds the scorer's only slot
        with httpx.Client(timeout=CLIENT_TIMEOUT_S) as client:
            r = client.post(f"{url}/v1/rerank", json={"query": "capital", "documents": ["capital",
                                                                                      "x"]})
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["index"] == 0
        assert "scores" in busy.result(timeout_s=CLIENT_TIMEOUT_S)
    finally:
        serve.delete("restarted")


_RESTARTED_INGRESS = "SERVE_REPLICA::restarted#RerankIngress#"  # this app's, not another's


def _serve_actor_names() -> list[str]:
    from ray._private import state

    return [a["Name"] for a in state.actors(actor_state_name="ALIVE").values()]


def test_full_ingress_queue_is_429_at_the_proxy(ray_cluster: RayCluster) -> None:
    # One request in the ingress and one queued at the proxy: the rest of a burst is refused
    # at once with 429 and Retry-After (Serve's default would be a 503), not queued.
    import asyncio

    from ray import serve

    from deployments.serve.app import build_app

    small = {"num_cpus": 0.25}
    args = {
        "models": {"slow": {"type": "plugin", "name": f"{PLUGINS}:SlowScorer",
                            "options": {"delay_s": 0.5, "delay_marker": "sleep"}}},
        "deployments": {
            "ingress": {"num_replicas": 1, "ray_actor_options": small,
                        "max_ongoing_requests": 1, "max_queued_requests": 1},
            "plugin": {"num_replicas": 1, "ray_actor_options": small},
        },
    }
    deploy_app(build_app(args), name="backpressure", route_prefix="/backpressure")
    url = f"{ray_cluster.http_url}/backpressure/v1/rerank"

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S) as client:
            return await asyncio.gather(*(
                client.post(url, json={"query": "please sleep", "documents": ["a"]})
                for _ in range(8)))

    try:
        responses = asyncio.run(burst())
    finally:
        serve.delete("backpressure")
    statuses = [r.status_code for r in responses]
    assert 200 in statuses and 429 in statuses and set(statuses) <= {200, 429}, statuses
    rejected = next(r for r in responses if r.status_code == 429)
    assert rejected.headers["retry-after"] == "1"
