"""The FastAPI app of the ingress: middleware, auth, error bodies, metrics and shared routes.

Built per ingress replica by :func:`build_api` around a :class:`RerankService`, so the app holds
that replica's settings (keys, limits) in closures rather than in module state. The rerank
routes come from one translator module per API dialect (``deployments.serve.dialects``):
``POST /v1/rerank`` (Cohere v1, Jina), ``POST /v2/rerank`` (Cohere v2), ``POST /rerank``
(text-embeddings-inference, bare list). This module adds ``GET /v1/models``, ``GET /health``,
``GET /ready`` and the OpenAPI docs at ``/docs`` and ``/redoc``, whose Swagger UI and ReDoc
assets are served by the app itself (``fastapi-offline``), so they render with no internet
access. Every error is
``{"error": {"message", "type", "param"}}`` with the status chosen in ``deployments.serve.errors``.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deployments.serve import tracing
from deployments.serve.api_docs import error_responses
from deployments.serve.dialects import DIALECTS, DialectContext
from deployments.serve.dialects.context import Work
from deployments.serve.errors import ApiError, error_response, to_api_error
from deployments.serve.metrics import NO_KEY, UNKNOWN_MODEL, UNMATCHED_ROUTE, RequestRecorder
from deployments.serve.proxy_middleware import RESEND_HEADER
from deployments.serve.schemas import ModelCard, ModelList
from deployments.serve.service import RerankOutcome, RerankService, describe_backend
from reranker import __version__
from reranker.errors import ModelNotFoundError

__all__ = ["build_api", "GuardMiddleware"]

OPEN_PATHS = frozenset({"/health", "/ready", "/docs", "/docs/oauth2-redirect", "/openapi.json",
                        "/redoc"})
# Where the docs pages load Swagger UI and ReDoc from; open like the pages themselves.
DOCS_ASSETS = "/docs-assets"
DEBUG_HEADER = "x-reranker-debug"

Reject = Callable[[Scope, ApiError], None]
# The metric label of the API key the request in this context was accepted with.
_KEY_LABEL: contextvars.ContextVar[str] = contextvars.ContextVar("key_label", default=NO_KEY)
# Whether the proxy resent the request in this context (its ingress died before answering).
_RESENT: contextvars.ContextVar[bool] = contextvars.ContextVar("resent", default=False)


class GuardMiddleware:
    """API key, body size and body budget checks, before any parsing.

    Pure ASGI, so bodies are counted as they arrive, chunked uploads included. Besides the
    per-request ``max_body_bytes`` (413), the bodies this replica holds at once, from the first
    byte read until the response is sent, stay within ``max_inflight_body_bytes``: a request
    that would take it over is answered 429 with ``Retry-After`` instead of being buffered.
    """

    def __init__(self, app: ASGIApp, *, settings_keys: Callable[[str], bool] | None,
                 max_body_bytes: int, on_reject: Reject,
                 max_inflight_body_bytes: int | None = None,
                 key_label: Callable[[str], str | None] | None = None) -> None:
        self.app = app
        self.key_accepted = settings_keys
        self.key_label = key_label
        self.max_body_bytes = max_body_bytes
        self.max_inflight_body_bytes = max_inflight_body_bytes
        self.on_reject = on_reject
        self.inflight_body_bytes = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _route_path(scope)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.key_accepted is not None and not _is_open(path):
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not self.key_accepted(token.strip()):
                err = ApiError(401, "authentication_error",
                               "missing or invalid API key (send 'Authorization: Bearer KEY')")
                await self._reject(err, scope, receive, send)
                return
            if self.key_label is not None:
                _KEY_LABEL.set(self.key_label(token.strip()) or NO_KEY)
        _RESENT.set(RESEND_HEADER in headers)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._reject(self._too_large(), scope, receive, send)
            return
        held = 0  # bytes of this request counted in inflight_body_bytes
        try:
            # Reserve a declared length up front, so a burst of large uploads is refused before
            # any of it is buffered.
            if declared.isdigit() and not self._reserve(int(declared)):
                await self._reject(self._busy(), scope, receive, send)
                return
            held = int(declared) if declared.isdigit() else 0
            body = bytearray()
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body.extend(message.get("body", b""))
                more = message.get("more_body", False)
                if len(body) > self.max_body_bytes:
                    await self._reject(self._too_large(), scope, receive, send)
                    return
                if len(body) > held:
                    if not self._reserve(len(body) - held):
                        await self._reject(self._busy(), scope, receive, send)
                        return
                    held = len(body)
            await self.app(scope, _replay(bytes(body), receive), send)
        finally:
            self.inflight_body_bytes -= held

    def _reserve(self, n: int) -> bool:
        budget = self.max_inflight_body_bytes
        if budget is not None and self.inflight_body_bytes + n > budget:
            return False
        self.inflight_body_bytes += n
        return True

    def _too_large(self) -> ApiError:
        return ApiError(413, "request_too_large",
                        f"request body is larger than {self.max_body_bytes} bytes")

    def _busy(self) -> ApiError:
        return ApiError(429, "rate_limit_error",
                        "the server holds too many request bodies at once; retry later",
                        retry_after_s=1.0)

    async def _reject(self, err: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
        self.on_reject(scope, err)
        await error_response(err)(scope, receive, send)


def _is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(DOCS_ASSETS + "/")


def _route_path(scope: Scope) -> str:
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):] or "/"
    return path


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _validation_error(exc: RequestValidationError) -> ApiError:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return ApiError(400, "invalid_request_error", "request body is not valid JSON")
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
        for e in errors[:5]
    )
    return ApiError(422, "invalid_request_error", problems or "invalid request",
                    ".".join(loc) or None)


def build_api(service: RerankService, metrics: RequestRecorder | None = None) -> FastAPI:
    """The ingress's FastAPI app around ``service``; ``metrics`` records every request."""
    settings = service.settings
    api = FastAPIOffline(
        static_url=DOCS_ASSETS,
        title="reranker",
        version=__version__,
        description="Cross-encoder reranking with Cohere-, Jina-, TEI-, Infinity- and "
        "vLLM-compatible routes.",
    )

    # (path pattern, template) of every route, filled in once the routes are added below.
    templates: list[tuple[re.Pattern[str], str]] = []

    def route_label(scope: Scope) -> str:
        # The template of the route the path matches, never the raw path: any client can send
        # any path, and each distinct label value would be a new metric series.
        path = _route_path(scope)
        return next((t for pattern, t in templates if pattern.match(path)), UNMATCHED_ROUTE)

    def model_label(model: str | None) -> str:
        try:
            return service.resolve(model)[0]
        except ModelNotFoundError:
            return UNKNOWN_MODEL

    def record(route: str, model: str, status: int, **kw: Any) -> None:
        if metrics is not None:
            metrics.record(route, model, status, **kw)

    def on_reject(scope: Scope, err: ApiError) -> None:
        record(route_label(scope), UNKNOWN_MODEL, err.status, error_type=err.type)

    api.add_middleware(
        GuardMiddleware,
        settings_keys=settings.key_accepted if settings.api_keys else None,
        max_body_bytes=settings.limits.max_body_bytes,
        max_inflight_body_bytes=settings.limits.max_inflight_body_bytes,
        on_reject=on_reject,
        key_label=settings.key_label if settings.api_keys else None,
    )
    if tracing.enabled():
        # Added last, so outermost: requests the guard refuses are traced too.
        api.add_middleware(tracing.TracingMiddleware, route_label=route_label)

    @api.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = _validation_error(exc)
        record(route_label(request.scope), UNKNOWN_MODEL, err.status, error_type=err.type)
        return error_response(err)

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(ApiError(exc.status_code, kind, str(exc.detail)))

    async def run(route: str, model: str | None, work: Work) -> RerankOutcome:
        started = time.monotonic()
        try:
            if _RESENT.get():
                service.check_resend(model)
            outcome = await work()
        except Exception as exc:
            err = to_api_error(exc)
            record(route, model_label(model), err.status, error_type=err.type)
            raise err from exc
        n = sum(c["documents"] for c in outcome.chunks)
        record(route, outcome.model, 200, documents=n, latency_s=time.monotonic() - started)
        tokens = outcome.usage.tokens if outcome.usage is not None else None
        if metrics is not None and tokens:
            metrics.record_tokens(outcome.model, _KEY_LABEL.get(), tokens)
        return outcome

    def debug_meta(request: Request, outcome: RerankOutcome) -> dict[str, Any]:
        if not settings.debug or request.headers.get(DEBUG_HEADER, "") not in ("1", "true"):
            return {}
        return {"debug": {"chunks": outcome.chunks}}

    context = DialectContext(service=service, run=run, debug_meta=debug_meta)
    routers = [dialect.router(context) for dialect in DIALECTS]
    for router in routers:
        api.include_router(router)

    @api.get("/v1/models", response_model=ModelList, tags=["models"],
             responses=error_responses(401))
    async def list_models() -> ModelList:
        cards = [
            ModelCard(id=name, variant=cfg.type, backend=describe_backend(cfg),
                      default=name == settings.default_model)
            for name, cfg in settings.models.items()
        ]
        return ModelList(data=cards, default_model=settings.default_model)

    @api.get("/health", tags=["health"], summary="Liveness: the ingress answers")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/ready", tags=["health"], summary="Readiness: every variant has a loaded replica",
             responses=error_responses(503))
    async def ready() -> JSONResponse:
        states = await service.readiness()
        if all(states.values()):
            return JSONResponse({"status": "ready", "variants": states})
        waiting = ", ".join(v for v, ok in states.items() if not ok)
        err = ApiError(503, "service_unavailable_error",
                       f"not ready: waiting for the {waiting} deployment(s)", None, 5.0)
        return error_response(err, {"variants": states})

    for routes in [api.router.routes, *(r.routes for r in routers)]:
        templates.extend((r.path_regex, r.path) for r in routes if isinstance(r, Route))
    return api
