"""OpenTelemetry tracing of the serve app, exported over OTLP/HTTP; off unless configured.

Spans: ``POST /v2/rerank`` (the ingress request, a child of the caller's ``traceparent`` when
one is sent), ``rerank.model`` (one per model tried, so a fallback shows as two), ``rerank.chunk``
(each fan-out call), ``scorer.batch`` (the replica's ``@serve.batch`` call) and ``onnx.run`` (each
ONNX Runtime run of a local model). The W3C trace context crosses the Ray handle call as a small
dict argument (``trace=``), added only while tracing is on.

Each process (ingress replica, scorer replica) calls :func:`configure` once with the endpoint
the app builder read: ``tracing.otlp_endpoint`` in ``AppArgs`` or the standard
``OTEL_EXPORTER_OTLP_ENDPOINT`` (a base URL: ``/v1/traces`` is appended). Without one nothing
of OpenTelemetry is imported and every helper here is a no-op, so tracing costs nothing when
off. The packages are the ``tracing`` extra: ``pip install -e .[tracing]``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from reranker.errors import ConfigError

__all__ = [
    "TracingMiddleware",
    "carrier",
    "configure",
    "enabled",
    "force_flush",
    "instrument_backend",
    "shutdown",
    "span",
    "traces_url",
]

_TRACES_PATH = "/v1/traces"


class _State:
    tracer: Any = None
    provider: Any = None


_state = _State()


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector's base URL (as ``OTEL_EXPORTER_OTLP_ENDPOINT``)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(_TRACES_PATH) else endpoint + _TRACES_PATH


def configure(endpoint: str | None, service_name: str, *, batch: bool = True) -> bool:
    """Start exporting this process's spans to ``endpoint``; ``None`` keeps tracing off.

    ``batch=False`` exports each span as it ends (tests); the default batches in a thread.

    Raises:
        ConfigError: an endpoint is set but the ``tracing`` extra is not installed.
    """
    if not endpoint:
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as exc:
        raise ConfigError(
            "tracing needs OpenTelemetry: pip install 'reranker[tracing]' "
            "(or unset tracing.otlp_endpoint and OTEL_EXPORTER_OTLP_ENDPOINT)"
        ) from exc
    shutdown()
    # A provider of our own, not the global one: Ray or the user's code may own that.
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    exporter = OTLPSpanExporter(endpoint=traces_url(endpoint), timeout=5)
    provider.add_span_processor(
        BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    _state.provider, _state.tracer = provider, provider.get_tracer("reranker.serve")
    return True


def enabled() -> bool:
    """Whether this process exports spans."""
    return _state.tracer is not None


def force_flush() -> None:
    """Export the spans that ended and wait for it (tests; a replica shutting down)."""
    if _state.provider is not None:
        _state.provider.force_flush()


def shutdown() -> None:
    """Flush and stop exporting; tracing is off afterwards."""
    provider, _state.provider, _state.tracer = _state.provider, None, None
    if provider is not None:
        provider.shutdown()


@contextlib.contextmanager
def span(name: str, *, parent: Mapping[str, str] | None = None,
         links: Sequence[Mapping[str, str] | None] = (),
         attributes: Mapping[str, Any] | None = None, kind: str = "INTERNAL") -> Iterator[Any]:
    """A span around the block, current inside it; yields ``None`` when tracing is off.

    Args:
        name: the span name.
        parent: a W3C carrier (``traceparent``...) to parent the span under, instead of the
            current span (a request that crossed a process boundary).
        links: carriers of other spans this one serves (the other requests of a batch).
        attributes: span attributes.
        kind: ``SERVER``, ``CLIENT`` or ``INTERNAL``.
    """
    tracer = _state.tracer
    if tracer is None:
        yield None
        return
    from opentelemetry import trace

    context = _extract(parent) if parent else None
    span_links = [trace.Link(trace.get_current_span(_extract(c)).get_span_context())
                  for c in links if c]
    with tracer.start_as_current_span(
        name, context=context, links=span_links, attributes=dict(attributes or {}),
        kind=getattr(trace.SpanKind, kind),
    ) as current:
        yield current


def carrier() -> dict[str, str] | None:
    """The current trace context as a W3C carrier dict; ``None`` when tracing is off."""
    if _state.tracer is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    out: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(out)
    return out


def _extract(headers: Mapping[str, str]) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract(dict(headers))


def instrument_backend(backend: Any) -> None:
    """Trace each ONNX run of a local backend (others have none): an ``onnx.run`` span.

    The model's run hook (``OnnxCrossEncoder.observe_run``) is set only while tracing is on.
    """
    model: Any = getattr(backend, "model", None)
    if _state.tracer is None or not hasattr(model, "observe_run"):
        return

    def observe(rows: int, width: int) -> contextlib.AbstractContextManager[Any]:
        return span("onnx.run", attributes={"onnx.rows": rows, "onnx.width": width})

    model.observe_run = observe


class TracingMiddleware:
    """The ingress request span (ASGI), parented by the request's ``traceparent`` if any.

    Args:
        app: the ASGI app.
        route_label: the route template of a request (a bounded span name).
    """

    def __init__(self, app: Any, *, route_label: Callable[[Any], str]) -> None:
        self.app = app
        self.route_label = route_label

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or _state.tracer is None:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        route = self.route_label(scope)
        attributes = {"http.request.method": scope["method"], "http.route": route}
        with span(f"{scope['method']} {route}", parent=headers, attributes=attributes,
                  kind="SERVER") as current:

            async def traced_send(message: Any) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    current.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        from opentelemetry.trace import Status, StatusCode

                        current.set_status(Status(StatusCode.ERROR))
                await send(message)

            await self.app(scope, receive, traced_send)

