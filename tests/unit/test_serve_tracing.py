"""Tracing over fake handles and a real tiny ONNX model, exported to an in-process collector.

Checks what was really exported over OTLP/HTTP: span names, parent/child links across the
(fake) handle call, the caller's trace id kept, and that tracing off imports nothing.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deployments.serve import tracing
from deployments.serve.app import tracing_endpoint
from deployments.serve.args import AppArgs
from deployments.serve.http_api import build_api
from tests.otlp_standin import OtlpCollector
from tests.unit.serve_fakes import FakeScorer, service, settings

ROOT = Path(__file__).resolve().parents[2]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
DOCS = [f"doc {i} about cats" for i in range(10)]


@pytest.fixture
def collector() -> Iterator[OtlpCollector]:
    with OtlpCollector() as c:
        assert tracing.configure(c.url, "unit-test", batch=False)
        try:
            yield c
        finally:
            tracing.shutdown()


def _parent_of(carrier: dict[str, str] | None) -> tuple[str, str]:
    assert carrier is not None
    _, trace_id, span_id, _ = carrier["traceparent"].split("-")
    return trace_id, span_id


def test_ingress_model_and_chunk_spans_continue_the_callers_trace(
        collector: OtlpCollector) -> None:
    plugin = FakeScorer()
    with TestClient(build_api(service(settings(chunk_size=4), plugin=plugin))) as client:
        r = client.post("/v2/rerank", json={"query": "cats", "documents": DOCS},
                        headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"})
    assert r.status_code == 200, r.text
    tracing.force_flush()
    assert set(collector.paths) == {"/v1/traces"}
    [ingress] = collector.named("POST /v2/rerank")
    assert (ingress.trace_id, ingress.parent_span_id) == (TRACE_ID, CALLER_SPAN)
    assert ingress.attributes["http.response.status_code"] == 200
    assert ingress.service == "unit-test"
    [model] = collector.named("rerank.model")
    assert model.parent_span_id == ingress.span_id and model.attributes["reranker.model"] == "words"
    chunks = collector.named("rerank.chunk")
    assert len(chunks) == 3 and {c.parent_span_id for c in chunks} == {model.span_id}
    assert all(c.trace_id == TRACE_ID for c in chunks)
    # Each handle call carried its chunk span as the parent for the replica.
    sent = {_parent_of(call.trace) for call in plugin.calls}
    assert sent == {(TRACE_ID, c.span_id) for c in chunks}


def test_a_request_without_traceparent_starts_a_trace(collector: OtlpCollector) -> None:
    with TestClient(build_api(service())) as client:
        assert client.post("/rerank", json={"query": "q", "texts": ["a"]}).status_code == 200
        assert client.post("/rerank", json={"query": "  ", "texts": ["a"]}).status_code == 400
    tracing.force_flush()
    spans = collector.named("POST /rerank")
    assert len(spans) == 2 and all(s.parent_span_id == "" for s in spans)
    assert sorted(s.attributes["http.response.status_code"] for s in spans) == [200, 400]


def test_replica_batch_and_onnx_runs_are_children_of_the_chunks(
        collector: OtlpCollector, model_dirs: dict[str, Path]) -> None:
    import asyncio

    from deployments.serve.scorer import _Pending, _traced_batch
    from reranker.backends import ScoreItem, build_backend
    from reranker.config import parse_backend_config

    backend = build_backend(parse_backend_config(
        {"type": "custom", "model_id": str(model_dirs["bert1"])}))
    try:
        tracing.instrument_backend(backend)
        first = {"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"}
        other = {"traceparent": f"00-{'1' * 32}-{'2' * 16}-01"}
        group = [_Pending("tiny", ScoreItem("cats", ["a cat", "dogs"]), 0.0, first),
                 _Pending("tiny", ScoreItem("dogs", ["a dog"]), 0.0, other)]
        results = asyncio.run(_traced_batch("tiny", backend, group))
    finally:
        backend.close()
    assert [len(r) for r in results] == [2, 1]
    tracing.force_flush()
    [batch] = collector.named("scorer.batch")
    assert (batch.trace_id, batch.parent_span_id) == (TRACE_ID, CALLER_SPAN)
    assert batch.links == ("2" * 16,)
    assert batch.attributes["reranker.batch.requests"] == 2
    assert batch.attributes["reranker.batch.pairs"] == 3
    runs = collector.named("onnx.run")
    assert runs and all(r.parent_span_id == batch.span_id for r in runs)
    assert sum(r.attributes["onnx.rows"] for r in runs) == 3


def test_fallback_shows_as_two_model_spans(collector: OtlpCollector) -> None:
    from reranker.errors import ProviderRateLimitError

    async def rate_limited(call, attempt):  # type: ignore[no-untyped-def]
        raise ProviderRateLimitError("429")

    svc = service(settings(fallbacks={"words": ("local",)}), plugin=FakeScorer(rate_limited))
    with TestClient(build_api(svc)) as client:
        r = client.post("/v2/rerank", json={"query": "q", "documents": ["a"]})
    assert r.headers["x-reranker-fallback"] == "words->local (rate_limited)"
    tracing.force_flush()
    models = [s.attributes["reranker.model"] for s in collector.named("rerank.model")]
    assert sorted(models) == ["local", "words"]


def test_endpoint_from_args_or_the_standard_variable() -> None:
    args = AppArgs()
    assert tracing_endpoint(args, {}) is None
    assert tracing_endpoint(args, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == (
        "http://c:4318")
    pinned = AppArgs(tracing={"otlp_endpoint": "http://mine:4318"})
    assert tracing_endpoint(pinned, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == (
        "http://mine:4318")
    assert tracing.traces_url("http://c:4318/") == "http://c:4318/v1/traces"
    assert tracing.traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"
    assert not tracing.configure(None, "x") and not tracing.enabled()


def test_tracing_off_imports_no_opentelemetry() -> None:
    # Ray loads some of OpenTelemetry's SDK itself: what the app adds on top is what counts.
    code = """
import sys
import ray.serve, ray.serve.metrics, ray.exceptions, ray.serve.exceptions
def otel():
    return {m for m in sys.modules if m.startswith("opentelemetry")}
ray_loaded = otel()
from fastapi.testclient import TestClient
from deployments.serve.http_api import build_api
from tests.unit.serve_fakes import FakeScorer, service
plugin = FakeScorer()
with TestClient(build_api(service(plugin=plugin))) as c:
    assert c.post("/v2/rerank", json={"query": "q", "documents": ["a"]}).status_code == 200
assert plugin.calls[0].trace is None
print(sorted(otel() - ray_loaded))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
