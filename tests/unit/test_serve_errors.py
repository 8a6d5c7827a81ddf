"""The status table: every failure a scorer or the ingress can raise becomes one status, one
error type and the ``{"error": {...}}`` body, through the real app over fake handles."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from ray.exceptions import ActorDiedError
from ray.serve.exceptions import BackPressureError

from deployments.serve import errors as serve_errors
from deployments.serve.errors import ApiError, to_api_error
from deployments.serve.http_api import build_api
from deployments.serve.metrics import ERROR_TYPES
from reranker import errors as rerr
from tests.unit.serve_fakes import FakeScorer, ScoreCall, service, settings

CASES: list[tuple[BaseException, int, str, str | None, str | None]] = [
    (rerr.InputTooLongError("texts[0] is too long", param="texts[0]"), 413,
     "invalid_request_error", "texts[0]", None),
    (rerr.InvalidInputError("bad", param="documents[2]"), 400, "invalid_request_error",
     "documents[2]", None),
    (rerr.ModelNotFoundError("gone"), 404, "not_found_error", None, None),
    (rerr.ProviderRateLimitError("slow down", provider="cohere", retry_after_s=7), 429,
     "rate_limit_error", None, "7"),
    (rerr.ProviderTimeoutError("late", provider="cohere"), 504, "provider_timeout_error", None,
     None),
    (rerr.ProviderStatusError("503", provider="cohere", status_code=503), 502, "provider_error",
     None, None),
    (rerr.ProviderResponseError("bad json", provider="jina"), 502, "provider_error", None, None),
    (rerr.BackendTimeoutError("plugin timed out"), 504, "backend_timeout_error", None, None),
    (rerr.BackendError("plugin failed"), 500, "backend_error", None, None),
    (rerr.DownloadError("hub down"), 503, "model_unavailable_error", None, None),
    (rerr.ModelLoadError("bad onnx"), 500, "model_load_error", None, None),
    (rerr.ConfigError("bad config"), 500, "configuration_error", None, None),
    (rerr.RerankerError("other"), 500, "internal_error", None, None),
    (BackPressureError(num_queued_requests=9, max_queued_requests=8), 429, "rate_limit_error",
     None, "1"),
    (ActorDiedError(), 503, "service_unavailable_error", None, "1"),
    (TimeoutError(), 504, "timeout_error", None, None),
    (RuntimeError("secret detail"), 500, "internal_error", None, None),
]


@pytest.mark.parametrize(("exc", "status", "kind", "param", "retry_after"), CASES,
                         ids=[type(c[0]).__name__ for c in CASES])
def test_scorer_failures_map_to_one_status(exc: BaseException, status: int, kind: str,
                                           param: str | None, retry_after: str | None) -> None:
    async def fails(call: ScoreCall, attempt: int) -> list[float]:
        raise exc

    svc = service(settings(chunk_size=100), plugin=FakeScorer(fails))
    with TestClient(build_api(svc)) as client:
        r = client.post("/v1/rerank", json={"query": "q", "documents": ["a", "b"]})
    assert r.status_code == status, r.text
    body = r.json()
    assert body == {"error": {"message": body["error"]["message"], "type": kind,
                              "param": param}}
    assert r.headers.get("retry-after") == retry_after
    if isinstance(exc, RuntimeError):
        assert "secret detail" not in body["error"]["message"]  # internals stay inside


def test_chunked_failure_keeps_status_and_names_the_chunk() -> None:
    async def third_chunk_fails(call: ScoreCall, attempt: int) -> list[float]:
        if call.texts[0] == "d4":
            raise rerr.ProviderRateLimitError("quota", provider="cohere", retry_after_s=3)
        return [0.5] * len(call.texts)

    svc = service(settings(chunk_size=2), plugin=FakeScorer(third_chunk_fails))
    with TestClient(build_api(svc)) as client:
        r = client.post("/v2/rerank", json={"query": "q",
                                            "documents": [f"d{i}" for i in range(6)]})
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert "documents 4..5 of 6" in r.json()["error"]["message"]


def test_every_mapped_error_type_is_a_metric_label() -> None:
    kinds = {kind for _, _, kind in serve_errors._STATUS}
    kinds |= {to_api_error(exc).type for exc, *_ in CASES}
    kinds |= {"authentication_error", "request_too_large", "service_unavailable_error"}
    assert kinds <= ERROR_TYPES


def test_api_error_passes_through_unchanged() -> None:
    err = ApiError(413, "request_too_large", "too big", "query")
    assert to_api_error(err) is err


def test_unknown_route_and_method_are_json_errors() -> None:
    with TestClient(build_api(service())) as client:
        r = client.get("/v2/nothing")
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
        r = client.get("/v1/rerank")
        assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(("upstream", "sent"), [
    (float("inf"), "3600"), (1e300, "3600"), (float("nan"), "1"), (-5.0, "1"), (0.0, "1"),
    (2.4, "2"), (7200.0, "3600"),
])
def test_retry_after_from_a_provider_is_a_bounded_integer(upstream: float, sent: str) -> None:
    # Regression (issue 21 item 6): inf was a plain-text 500 (round(inf)), 1e300 a 301-digit
    # header, nan another 500.
    async def limited(call: ScoreCall, attempt: int) -> list[float]:
        raise rerr.ProviderRateLimitError("quota", provider="cohere", retry_after_s=upstream)

    svc = service(settings(chunk_size=100), plugin=FakeScorer(limited))
    with TestClient(build_api(svc), raise_server_exceptions=False) as client:
        for path, body in [("/v1/rerank", {"query": "q", "documents": ["a"]}),
                           ("/rerank", {"query": "q", "texts": ["a"]})]:
            r = client.post(path, json=body)
            assert r.status_code == 429, r.text
            assert r.json()["error"]["type"] == "rate_limit_error"
            assert r.headers["retry-after"] == sent
    assert int(sent) <= serve_errors.MAX_RETRY_AFTER_S
