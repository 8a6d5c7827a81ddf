"""The app on a head and two worker nodes: spread, fan-out, faults under load, autoscaling.

One several-node Ray for the module (tests/integration/cluster_harness.py), deployed from a copy
of serve_config.yaml with a tiny local model as the ``custom`` variant at 0.5 CPU per replica.
The tests run in file order and share it: the fault tests leave it at full strength again (a
lost node is replaced, as a cluster autoscaler would). tests/conftest.py runs this module before
anything that starts the session's one-node Ray.

Measured figures (seconds to full capacity, requests served) are attached to each test's report
(``record_property``: ``pytest --junitxml`` keeps them) and printed with ``-s``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.integration.cluster_harness import Load, LocalCluster, Outcome, app_config

pytestmark = [pytest.mark.integration, pytest.mark.multinode]

SCORER = "CustomScorer"
INGRESS = "RerankIngress"
CLIENT_TIMEOUT_S = 30.0
SCORERS = {"num_replicas": 3, "max_replicas_per_node": 1, "ray_actor_options": {"num_cpus": 0.5},
           "max_ongoing_requests": 32, "health_check_period_s": 1.0}


@pytest.fixture(scope="module")
def cluster(model_dirs: dict[str, Path]) -> Iterator[LocalCluster]:
    with LocalCluster(workers=2) as c:
        c.deploy(app_config(model_dirs["bert1"], c.http_port, chunk_size=16, debug=True,
                            custom=SCORERS))
        yield c


def _failures(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if not o.ok]


def _report(record_property: Any, **figures: Any) -> None:
    for key, value in figures.items():
        record_property(key, value)
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


def test_replicas_spread_over_nodes_and_fan_out_matches_the_library(
    cluster: LocalCluster, model_dirs: dict[str, Path]
) -> None:
    from reranker import Reranker

    ingress_nodes = cluster.replica_nodes(INGRESS)
    scorer_nodes = cluster.replica_nodes(SCORER)
    assert len(ingress_nodes) == 2 and len(set(ingress_nodes.values())) == 2, ingress_nodes
    assert len(set(scorer_nodes.values())) == 3, scorer_nodes

    query = "which city is the capital"
    docs = [f"passage {i}: " + ("the capital city is paris " * (i % 4)) + f"river {i * 7 % 13}"
            for i in range(200)]
    with httpx.Client(timeout=CLIENT_TIMEOUT_S) as client:
        r = client.post(f"{cluster.url}/v1/rerank", headers={"x-reranker-debug": "1"},
                        json={"query": query, "documents": docs})
    assert r.status_code == 200, r.text
    chunks = r.json()["meta"]["debug"]["chunks"]
    assert len(chunks) == 13 and sum(c["documents"] for c in chunks) == 200
    used_nodes = {scorer_nodes[c["replica"]] for c in chunks}
    assert len(used_nodes) >= 2, (used_nodes, chunks)

    with Reranker({"type": "custom", "model_id": str(model_dirs["bert1"])}) as local:
        expected = local.rerank(query, docs)
    got = r.json()["results"]
    assert [x["index"] for x in got] == [e.index for e in expected]
    np.testing.assert_allclose([x["relevance_score"] for x in got],
                               [e.score for e in expected], rtol=0, atol=1e-5)

    # Every node hosts replicas, so every node's proxy answers, health check and request alike.
    assert set(cluster.ports) == set(scorer_nodes.values())
    with httpx.Client(timeout=CLIENT_TIMEOUT_S) as client:
        for node, port in cluster.ports.items():
            base = f"http://127.0.0.1:{port}"
            # A node's proxy starts once the node has a replica, a moment after the app runs.
            cluster.wait_for(lambda b=base: _healthy(client, b), 30, f"the proxy of {node}")
            one = client.post(f"{base}/v1/rerank", json={"query": query, "documents": docs[:20]})
            assert one.status_code == 200 and len(one.json()["results"]) == 20, (node, one.text)


def _healthy(client: httpx.Client, base: str) -> bool:
    try:
        return client.get(f"{base}/-/healthz").status_code == 200
    except httpx.TransportError:
        return False


def test_ingress_killed_mid_request_is_resent(cluster: LocalCluster) -> None:
    # Serve's proxy answered a plain-text 500 when the ingress replica holding a request died;
    # the proxy middleware resends it to the other ingress. A proxy routes to the ingress on
    # its own node, so a request sent to a worker's proxy is held by the ingress killed here.
    import threading

    import ray

    ingress_nodes = cluster.replica_nodes(INGRESS)
    worker_ids = {n.node_id for n in cluster.workers}
    victim, node = next((r, n) for r, n in ingress_nodes.items() if n in worker_ids)
    docs = [f"document {i} on rivers and capital cities" for i in range(4000)]
    replies: list[Any] = []

    def post() -> None:
        with httpx.Client(timeout=CLIENT_TIMEOUT_S) as client:
            replies.append(client.post(f"http://127.0.0.1:{cluster.ports[node]}/v1/rerank",
                                       json={"query": "capital", "documents": docs}))

    sender = threading.Thread(target=post)
    sender.start()
    time.sleep(0.5)
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    sender.join(CLIENT_TIMEOUT_S + 5)
    (reply,) = replies
    assert reply.status_code == 200, reply.text
    assert len(reply.json()["results"]) == 4000
    cluster.wait_for(lambda: cluster.running(INGRESS) == 2
                     and victim not in cluster.replica_nodes(INGRESS), 60,
                     "the killed ingress to be replaced")


def test_scorer_replica_killed_under_load(cluster: LocalCluster, record_property: Any) -> None:
    import ray

    before = cluster.replica_nodes(SCORER)
    victim = next(iter(before))
    with Load(cluster.url, clients=4, timeout_s=CLIENT_TIMEOUT_S).running() as load:
        cluster.wait_for(lambda: len(load.outcomes) >= 8, 30, "traffic to flow")
        killed_at = time.monotonic()
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        # A replica name not seen before, then 3 RUNNING: the replacement finished starting.
        cluster.wait_for(lambda: set(cluster.replica_nodes(SCORER)) - set(before), 90,
                         "a replacement replica")
        cluster.wait_for(lambda: cluster.running(SCORER) == 3, 90,
                         "the replacement to run")
        recovered_s = time.monotonic() - killed_at
        cluster.wait_for(lambda: sum(o.started > killed_at + recovered_s for o in load.outcomes)
                         >= 8, 30, "traffic after recovery")
        outcomes = load.stop()
    _report(record_property, requests=len(outcomes), failed=len(_failures(outcomes)),
            seconds_to_full_capacity=round(recovered_s, 1))
    assert _failures(outcomes) == []


def test_losing_an_ingress_node_under_load(cluster: LocalCluster, record_property: Any) -> None:
    worker_ids = {n.node_id for n in cluster.workers}
    # The ingress an earlier test killed may still be being replaced: start from two.
    cluster.wait_for(lambda: len(cluster.replica_nodes(INGRESS)) == 2 and any(
        node in worker_ids for node in cluster.replica_nodes(INGRESS).values()), 60,
        "two ingress replicas, one on a worker")
    ingress_nodes = cluster.replica_nodes(INGRESS)
    doomed = next(node for node in ingress_nodes.values() if node in worker_ids)
    with Load(cluster.url, clients=4, timeout_s=CLIENT_TIMEOUT_S).running() as load:
        cluster.wait_for(lambda: len(load.outcomes) >= 8, 30, "traffic to flow")
        killed_at = time.monotonic()
        cluster.kill_node(doomed)
        # What a cluster autoscaler does for a lost node; the spread rules need three nodes.
        cluster.add_worker()
        cluster.wait_for(lambda: doomed not in cluster.actor_nodes("SERVE_REPLICA::").values()
                         and set(cluster.replica_nodes(INGRESS)) - set(ingress_nodes), 120,
                         "the lost node's ingress to be replaced")
        cluster.wait_for(lambda: cluster.running(INGRESS) == 2 and cluster.running(SCORER) == 3,
                         120, "the replacements to run")
        recovered_s = time.monotonic() - killed_at
        cluster.wait_for(lambda: sum(o.started > killed_at + recovered_s for o in load.outcomes)
                         >= 8, 30, "traffic after recovery")
        outcomes = load.stop()
    during = [o for o in outcomes if killed_at <= o.started <= killed_at + recovered_s]
    _report(record_property, requests=len(outcomes), during_recovery=len(during),
            failed=len(_failures(outcomes)), seconds_to_full_capacity=round(recovered_s, 1))
    # Every error a client could see is the documented JSON; none is expected at all: a
    # request the lost ingress held is resent by the proxy, a lost chunk is retried, and the
    # restarted ingress (cold readiness cache) asks Serve instead of answering 503.
    assert all(o.json_error for o in _failures(outcomes)), _failures(outcomes)
    assert _failures(outcomes) == []
    # Two ingress replicas again, one per node (a replica Serve is still replacing after the
    # load stops counts once it runs again).
    cluster.wait_for(lambda: len(cluster.replica_nodes(INGRESS)) == 2, 60,
                     "two ingress replicas")


def test_autoscaling_grows_under_load_and_shrinks_after(
    cluster: LocalCluster, model_dirs: dict[str, Path], record_property: Any
) -> None:
    autoscaling = {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 1,
                   "upscale_delay_s": 1, "downscale_delay_s": 2, "metrics_interval_s": 0.5,
                   "look_back_period_s": 2}
    scorers = {**SCORERS, "num_replicas": None, "autoscaling_config": autoscaling}
    cluster.deploy(app_config(model_dirs["bert1"], cluster.http_port, chunk_size=16,
                              custom=scorers))
    cluster.wait_for(lambda: cluster.running(SCORER) == 1, 90, "the scorers to shrink to 1")
    started = time.monotonic()
    with Load(cluster.url, clients=6, timeout_s=CLIENT_TIMEOUT_S).running() as load:
        cluster.wait_for(lambda: cluster.running(SCORER) == 3, 90, "scale-up to 3 replicas")
        up_s = time.monotonic() - started
        heavy = load.stop()
    stopped = time.monotonic()
    # A trickle of single-chunk requests while it shrinks: scale-down must not fail them.
    with Load(cluster.url, clients=1, documents=16, timeout_s=CLIENT_TIMEOUT_S).running() as light:
        cluster.wait_for(lambda: cluster.running(SCORER) == 1, 120, "scale-down to 1 replica")
        down_s = time.monotonic() - stopped
        trickle = light.stop()
    _report(record_property, scale_up_s=round(up_s, 1), scale_down_s=round(down_s, 1),
            requests=len(heavy) + len(trickle),
            failed=len(_failures(heavy)) + len(_failures(trickle)))
    assert _failures(heavy) == [] and _failures(trickle) == []
    assert len(trickle) > 0 and cluster.app_status() == "RUNNING"
