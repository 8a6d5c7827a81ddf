"""Tracing through the real Ray Serve app: one trace from the caller's ``traceparent`` through
the ingress, the Ray handle call and the scorer replica down to the ONNX runs, exported by each
replica over OTLP/HTTP to an in-process collector stand-in.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.ray_fixtures import RayCluster, deploy_app, wait_for
from tests.otlp_standin import OtlpCollector, ReceivedSpan

pytestmark = pytest.mark.integration

TRACE_ID = "5bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "10f067aa0ba902b7"


@pytest.fixture(scope="module")
def traced(ray_cluster: RayCluster, model_dirs: dict[str, Path]) -> Iterator[tuple[str,
                                                                                    OtlpCollector]]:
    from ray import serve

    from deployments.serve.app import build_app
    from deployments.serve.args import AppArgs

    small = {"num_cpus": 0.25}
    with OtlpCollector() as collector:
        args = AppArgs.model_validate({
            "models": {"tiny": {"type": "custom", "model_id": str(model_dirs["bert1"])}},
            "chunk_size": 2,
            "tracing": {"otlp_endpoint": collector.url, "service_name": "it"},
            "deployments": {"ingress": {"num_replicas": 1, "ray_actor_options": small},
                            "custom": {"num_replicas": 1, "ray_actor_options": small}},
        })
        deploy_app(build_app(args), name="traced", route_prefix="/traced")
        try:
            yield f"{ray_cluster.http_url}/traced", collector
        finally:
            serve.delete("traced")


def test_one_trace_from_the_caller_to_the_onnx_runs(traced: tuple[str, OtlpCollector]) -> None:
    url, collector = traced
    r = httpx.post(f"{url}/v1/rerank", json={"query": "cats", "documents": ["a", "b", "c"]},
                   headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"}, timeout=30)
    assert r.status_code == 200, r.text

    def exported() -> list[ReceivedSpan] | None:
        spans = [s for s in collector.spans if s.trace_id == TRACE_ID]
        names = {s.name for s in spans}
        wanted = {"POST /v1/rerank", "rerank.model", "rerank.chunk", "scorer.batch", "onnx.run"}
        return spans if wanted <= names else None

    spans = wait_for(exported, timeout_s=60, interval_s=0.5, what="spans to be exported")
    by_id = {s.span_id: s for s in spans}
    [ingress] = [s for s in spans if s.name == "POST /v1/rerank"]
    assert ingress.parent_span_id == CALLER_SPAN and ingress.service == "it-ingress"
    chunks = [s for s in spans if s.name == "rerank.chunk"]
    assert len(chunks) == 2  # 3 documents, chunk_size 2
    assert all(by_id[c.parent_span_id].name == "rerank.model" for c in chunks)
    batches = [s for s in spans if s.name == "scorer.batch"]
    assert batches and all(b.service == "it-custom" for b in batches)
    chunk_ids = {c.span_id for c in chunks}
    # Each batch is the child of a chunk span, across the Ray handle call.
    assert all(b.parent_span_id in chunk_ids for b in batches)
    runs = [s for s in spans if s.name == "onnx.run"]
    assert all(by_id[r.parent_span_id].name == "scorer.batch" for r in runs)
