"""The FastAPI app of the ingress: routes, request guards and error bodies.

Built per ingress replica by :func:`build_api` around a :class:`RerankService`, so the app holds
that replica's settings (keys, limits) in closures rather than in module state.

Routes: ``POST /v1/rerank`` (Cohere v1, Jina), ``POST /v2/rerank`` (Cohere v2), ``POST /rerank``
(text-embeddings-inference, bare list), ``GET /v1/models``, ``GET /health``, ``GET /ready``,
and the OpenAPI docs at ``/docs``. Every error is ``{"error": {"message", "type", "param"}}``
with the status chosen in ``deployments.serve.errors``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deployments.serve.errors import ApiError, error_response, to_api_error
from deployments.serve.metrics import IngressMetrics
from deployments.serve.schemas import (
    ModelCard,
    ModelList,
    TeiRerankRequest,
    TeiResult,
    V1RerankRequest,
    V1RerankResponse,
    V2RerankRequest,
    V2RerankResponse,
)
from deployments.serve.service import RerankOutcome, RerankService, describe_backend, texts_for
from reranker import __version__
from reranker.types import Truncation

__all__ = ["build_api", "GuardMiddleware"]

OPEN_PATHS = frozenset({"/health", "/ready", "/docs", "/docs/oauth2-redirect", "/openapi.json",
                        "/redoc"})
DEBUG_HEADER = "x-reranker-debug"

Reject = Callable[[str, ApiError], None]


class GuardMiddleware:
    """API key and body size checks, before any parsing (pure ASGI, so bodies are counted as
    they arrive, chunked uploads included)."""

    def __init__(self, app: ASGIApp, *, settings_keys: Callable[[str], bool] | None,
                 max_body_bytes: int, on_reject: Reject) -> None:
        self.app = app
        self.key_accepted = settings_keys
        self.max_body_bytes = max_body_bytes
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _route_path(scope)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.key_accepted is not None and path not in OPEN_PATHS:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not self.key_accepted(token.strip()):
                err = ApiError(401, "authentication_error",
                               "missing or invalid API key (send 'Authorization: Bearer KEY')")
                await self._reject(path, err, scope, receive, send)
                return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._reject(path, self._too_large(), scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                await self._reject(path, self._too_large(), scope, receive, send)
                return
        await self.app(scope, _replay(bytes(body), receive), send)

    def _too_large(self) -> ApiError:
        return ApiError(413, "request_too_large",
                        f"request body is larger than {self.max_body_bytes} bytes")

    async def _reject(self, path: str, err: ApiError, scope: Scope, receive: Receive,
                      send: Send) -> None:
        self.on_reject(path, err)
        await error_response(err)(scope, receive, send)


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


def build_api(service: RerankService, metrics: IngressMetrics | None = None) -> FastAPI:
    """The ingress's FastAPI app around ``service``."""
    settings = service.settings
    api = FastAPI(
        title="reranker",
        version=__version__,
        description="Cross-encoder reranking with Cohere-, Jina- and TEI-compatible routes.",
    )

    def record(route: str, model: str, status: int, **kw: Any) -> None:
        if metrics is not None:
            metrics.record(route, model, status, **kw)

    def on_reject(path: str, err: ApiError) -> None:
        record(path, "", err.status, error_type=err.type)

    api.add_middleware(
        GuardMiddleware,
        settings_keys=settings.key_accepted if settings.api_keys else None,
        max_body_bytes=settings.limits.max_body_bytes,
        on_reject=on_reject,
    )

    @api.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = _validation_error(exc)
        record(_route_path(request.scope), "", err.status, error_type=err.type)
        return error_response(err)

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(ApiError(exc.status_code, kind, str(exc.detail)))

    async def run(route: str, model: str | None,
                  work: Callable[[], Awaitable[RerankOutcome]]) -> RerankOutcome:
        started = time.monotonic()
        try:
            outcome = await work()
        except Exception as exc:
            err = to_api_error(exc)
            record(route, model or settings.default_model, err.status, error_type=err.type)
            raise err from exc
        n = sum(c["documents"] for c in outcome.chunks)
        record(route, outcome.model, 200, documents=n, latency_s=time.monotonic() - started)
        return outcome

    def debug_meta(request: Request, outcome: RerankOutcome) -> dict[str, Any]:
        if not settings.debug or request.headers.get(DEBUG_HEADER, "") not in ("1", "true"):
            return {}
        return {"debug": {"chunks": outcome.chunks}}

    @api.post("/v1/rerank", response_model=V1RerankResponse, response_model_exclude_none=True,
              tags=["rerank"], summary="Rerank (Cohere v1 and Jina shape)")
    async def rerank_v1(body: V1RerankRequest, request: Request) -> dict[str, Any]:
        async def work() -> RerankOutcome:
            query = service.check_request(body.query, len(body.documents))
            texts = texts_for(body.documents, body.rank_fields)
            service.check_texts(texts)
            truncation = None
            if body.max_chunks_per_doc is not None:
                service.check_cut_supported(body.model, "max_chunks_per_doc")
                truncation = Truncation(max_chunks=body.max_chunks_per_doc)
            return await service.rerank(
                model=body.model, query=query, texts=texts, documents=body.documents,
                top_n=body.top_n, return_documents=body.return_documents,
                truncation=truncation,
            )

        outcome = await run("/v1/rerank", body.model, work)
        results = [
            {"index": r.index, "relevance_score": r.score,
             "document": {"text": r.document} if isinstance(r.document, str) else r.document}
            for r in outcome.results
        ]
        meta = {"api_version": {"version": "1"}, **debug_meta(request, outcome)}
        return {"id": str(uuid.uuid4()), "model": outcome.model, "results": results, "meta": meta}

    @api.post("/v2/rerank", response_model=V2RerankResponse, response_model_exclude_none=True,
              tags=["rerank"], summary="Rerank (Cohere v2 shape)")
    async def rerank_v2(body: V2RerankRequest, request: Request) -> dict[str, Any]:
        texts: list[str] = []

        async def work() -> RerankOutcome:
            query = service.check_request(body.query, len(body.documents))
            texts.extend(texts_for(body.documents))
            service.check_texts(texts)
            truncation = None
            if body.max_tokens_per_doc is not None:
                service.check_cut_supported(body.model, "max_tokens_per_doc")
                truncation = Truncation(max_document_tokens=body.max_tokens_per_doc)
            return await service.rerank(
                model=body.model, query=query, texts=texts, documents=None, top_n=body.top_n,
                return_documents=False, truncation=truncation,
            )

        outcome = await run("/v2/rerank", body.model, work)
        results = [
            {"index": r.index, "relevance_score": r.score,
             "document": {"text": texts[r.index]} if body.return_documents else None}
            for r in outcome.results
        ]
        meta = {"api_version": {"version": "2"}, **debug_meta(request, outcome)}
        return {"id": str(uuid.uuid4()), "results": results, "meta": meta}

    @api.post("/rerank", response_model=list[TeiResult], response_model_exclude_none=True,
              tags=["rerank"], summary="Rerank (text-embeddings-inference shape)")
    async def rerank_tei(body: TeiRerankRequest) -> list[dict[str, Any]]:
        async def work() -> RerankOutcome:
            query = service.check_request(body.query, len(body.texts))
            service.check_texts(body.texts, "texts")
            side = "left" if body.truncation_direction.lower() == "left" else "right"
            if side == "left":
                service.check_cut_supported(body.model, "truncation_direction")
            if body.truncate is False:
                service.check_cut_supported(body.model, "truncate")
            # Without an explicit value the server's default applies where it can: to local
            # models (provider APIs and plugins cut texts themselves).
            allow = body.truncate if body.truncate is not None else (
                settings.tei_auto_truncate or not service.cuts_locally(body.model))
            truncation = Truncation(side=side, allow=allow, field="texts")
            return await service.rerank(
                model=body.model, query=query, texts=body.texts, documents=None, top_n=None,
                return_documents=False, raw_scores=body.raw_scores, truncation=truncation,
            )

        outcome = await run("/rerank", body.model, work)
        return [
            {"index": r.index, "score": r.score,
             "text": body.texts[r.index] if body.return_text else None}
            for r in outcome.results
        ]

    @api.get("/v1/models", response_model=ModelList, tags=["models"])
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

    @api.get("/ready", tags=["health"], summary="Readiness: every variant has a loaded replica")
    async def ready() -> JSONResponse:
        states = await service.readiness()
        if all(states.values()):
            return JSONResponse({"status": "ready", "variants": states})
        waiting = ", ".join(v for v, ok in states.items() if not ok)
        err = ApiError(503, "service_unavailable_error",
                       f"not ready: waiting for the {waiting} deployment(s)", None, 5.0)
        return error_response(err, {"variants": states})

    return api
