"""Prometheus metrics through Ray Serve's metrics API (exported by each node's metrics agent).

Ray exports each metric with a ``ray_`` prefix (``reranker_requests_total`` is scraped as
``ray_reranker_requests_total``; :func:`exported_name`) from every node's metrics export port,
not from the app's HTTP port. Ray adds the ``deployment``, ``replica`` and ``application`` tags
itself. Metric objects are
created inside replicas (in ``__init__``), never at import time.

Every label value comes from a bounded set, so no client can create new series: ``route`` is a
route template of the app (or ``unmatched``), ``model`` a configured model name (or
``unknown``), an error ``type`` one of :data:`ERROR_TYPES` (anything else counts as
``internal_error``), and an API ``key`` the configured key's position (``key0``, ``key1``...) or
:data:`NO_KEY` when the app has no keys. Fallbacks are counted by configured model names (or
``first_stage``) and one of the fixed reasons of ``deployments.serve.fallback``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ray.serve.metrics import Counter, Histogram

if TYPE_CHECKING:
    from deployments.serve.fallback import FallbackHop

__all__ = [
    "ERROR_TYPES",
    "EXPORTED_NAMES",
    "FallbackMetrics",
    "HISTOGRAMS",
    "METRIC_NAMES",
    "NO_KEY",
    "UNKNOWN_MODEL",
    "UNMATCHED_ROUTE",
    "IngressMetrics",
    "RequestRecorder",
    "ScorerMetrics",
    "error_type_label",
    "exported_name",
]

UNMATCHED_ROUTE = "unmatched"
UNKNOWN_MODEL = "unknown"
NO_KEY = "none"
# The error types the HTTP layer sends (deployments.serve.errors and the ingress's own checks).
ERROR_TYPES = frozenset({
    "authentication_error",
    "backend_error",
    "backend_timeout_error",
    "configuration_error",
    "internal_error",
    "invalid_request_error",
    "model_load_error",
    "model_unavailable_error",
    "not_found_error",
    "provider_error",
    "provider_timeout_error",
    "rate_limit_error",
    "request_too_large",
    "service_unavailable_error",
    "timeout_error",
})

REQUESTS = "reranker_requests_total"
ERRORS = "reranker_errors_total"
DOCUMENTS = "reranker_documents_scored_total"
LATENCY = "reranker_request_latency_s"
BATCH_SIZE = "reranker_batch_size"
BATCH_PAIRS = "reranker_batch_pairs"
QUEUE_WAIT = "reranker_queue_wait_s"
INFERENCE = "reranker_inference_s"
FALLBACKS = "reranker_fallbacks_total"
TOKENS = "reranker_tokens_scored_total"
METRIC_NAMES = (REQUESTS, ERRORS, DOCUMENTS, LATENCY, BATCH_SIZE, BATCH_PAIRS, QUEUE_WAIT,
                INFERENCE, FALLBACKS, TOKENS)
"""The names the metrics are created with."""
HISTOGRAMS = frozenset({LATENCY, BATCH_SIZE, BATCH_PAIRS, QUEUE_WAIT, INFERENCE})
"""Exported as ``<name>_bucket``, ``<name>_sum`` and ``<name>_count``."""
# Ray's metrics agent prefixes every application metric with this.
_EXPORT_PREFIX = "ray_"


def exported_name(name: str) -> str:
    """The name Prometheus scrapes for ``name`` (histograms add ``_bucket/_sum/_count``)."""
    return _EXPORT_PREFIX + name


EXPORTED_NAMES = tuple(exported_name(n) for n in METRIC_NAMES)
"""The names to write PromQL with (README, the Grafana dashboard)."""

_LATENCY_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
              60.0]
_BATCH = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]
_PAIRS = [1.0, 8.0, 32.0, 100.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 10_000.0]


def error_type_label(error_type: str) -> str:
    """``error_type`` if it is one of :data:`ERROR_TYPES`, else ``internal_error``."""
    return error_type if error_type in ERROR_TYPES else "internal_error"


class RequestRecorder(Protocol):
    """What the HTTP app records a request with (:class:`IngressMetrics`, or a test's fake)."""

    def record(self, route: str, model: str, status: int, *, error_type: str | None = None,
               documents: int = 0, latency_s: float | None = None) -> None: ...

    def record_tokens(self, model: str, key: str, tokens: int) -> None: ...


class IngressMetrics:
    """Requests, errors and documents as seen by the HTTP ingress."""

    def __init__(self) -> None:
        self.requests = Counter(
            REQUESTS,
            description="Rerank HTTP requests by route, model and status code.",
            tag_keys=("route", "model", "status"),  # type: ignore[arg-type]  # Ray stubs: 1-tuple
        )
        self.errors = Counter(
            ERRORS,
            description="Failed requests by error type.",
            tag_keys=("route", "type"),  # type: ignore[arg-type]  # Ray stubs: 1-tuple
        )
        self.documents = Counter(
            DOCUMENTS,
            description="Documents scored, by model.",
            tag_keys=("model",),
        )
        self.tokens = Counter(
            TOKENS,
            description="Tokens run through the model for successful requests, by model and "
            "API key (the key's position in the configuration, never the key), for billing "
            "and caps. Models that do not count tokens (providers, plugins) add nothing.",
            tag_keys=("model", "key"),  # type: ignore[arg-type]  # Ray stubs: 1-tuple
        )
        self.latency = Histogram(
            LATENCY,
            description="End-to-end latency of successful rerank requests.",
            boundaries=_LATENCY_S,
            tag_keys=("route", "model"),  # type: ignore[arg-type]  # Ray stubs: 1-tuple
        )

    def record(self, route: str, model: str, status: int, *, error_type: str | None = None,
               documents: int = 0, latency_s: float | None = None) -> None:
        self.requests.inc(tags={"route": route, "model": model, "status": str(status)})
        if error_type is not None:
            self.errors.inc(tags={"route": route, "type": error_type_label(error_type)})
        if documents:
            self.documents.inc(documents, tags={"model": model})
        if latency_s is not None:
            self.latency.observe(latency_s, tags={"route": route, "model": model})

    def record_tokens(self, model: str, key: str, tokens: int) -> None:
        if tokens:
            self.tokens.inc(tokens, tags={"model": model, "key": key})


class FallbackMetrics:
    """Fallback hops taken by the ingress: which model was left, for which, and why."""

    def __init__(self) -> None:
        self.fallbacks = Counter(
            FALLBACKS,
            description="Requests moved from a model to its next fallback, by reason.",
            tag_keys=("model", "fallback", "reason"),  # type: ignore[arg-type]  # Ray stubs
        )

    def record(self, hop: FallbackHop, fallback: str) -> None:
        """Count one hop (``RerankService``'s ``on_fallback``)."""
        self.fallbacks.inc(tags={"model": hop.model, "fallback": fallback, "reason": hop.reason})


class ScorerMetrics:
    """Batching and timing inside a variant replica, per model."""

    def __init__(self) -> None:
        self.batch_size = Histogram(
            BATCH_SIZE,
            description="Requests merged into one backend call.",
            boundaries=_BATCH,
            tag_keys=("model",),
        )
        self.batch_pairs = Histogram(
            BATCH_PAIRS,
            description="(query, document) pairs in one backend call.",
            boundaries=_PAIRS,
            tag_keys=("model",),
        )
        self.queue_wait = Histogram(
            QUEUE_WAIT,
            description="Time a request waited in the replica before its batch ran.",
            boundaries=_LATENCY_S,
            tag_keys=("model",),
        )
        self.inference = Histogram(
            INFERENCE,
            description="Time of one backend call (a whole batch).",
            boundaries=_LATENCY_S,
            tag_keys=("model",),
        )

    def record_batch(self, model: str, requests: int, pairs: int, waits_s: list[float],
                     inference_s: float) -> None:
        tags = {"model": model}
        self.batch_size.observe(requests, tags=tags)
        self.batch_pairs.observe(pairs, tags=tags)
        for wait in waits_s:
            self.queue_wait.observe(max(wait, 0.0), tags=tags)
        self.inference.observe(inference_s, tags=tags)
