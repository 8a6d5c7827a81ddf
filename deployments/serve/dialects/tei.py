"""``POST /rerank``: text-embeddings-inference (``texts``) or Infinity / vLLM (``documents``).

Three servers put their rerank route at ``/rerank`` with different bodies, and clients built for
each send theirs there: a body with ``texts`` is TEI and gets TEI's bare list back; a body with
``documents`` is Infinity's or vLLM's and gets their object of ``results`` (``id``, ``model``,
``object``, ``created``). The two documented answers disagree on one point: vLLM (and Together)
return ``document: {"text": ...}`` while Infinity returns a bare string, and their clients parse
only their own (litellm's ``infinity/`` provider fails on an object, ``hosted_vllm/`` on a
string). ``/rerank`` answers vLLM's form; ``/infinity/rerank`` answers Infinity's, for clients
pointed at ``http://host:port/infinity``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from deployments.serve.api_docs import RERANK_STATUSES, error_responses, examples
from deployments.serve.dialects.context import DialectContext, fallback_meta
from deployments.serve.errors import ApiError
from deployments.serve.schemas import (
    DocumentsRerankRequest,
    DocumentsRerankResponse,
    RerankAnswer,
    TeiRerankRequest,
)
from deployments.serve.service import RerankOutcome, texts_for
from reranker.types import Truncation

__all__ = ["INFINITY_ROUTE", "ROUTE", "router"]

ROUTE = "/rerank"
INFINITY_ROUTE = "/infinity/rerank"


def _body_doc(infinity: bool) -> dict[str, Any]:
    # The body is parsed by hand (its shape decides the dialect), so the OpenAPI request body is
    # spelled out: either shape, with an example of each. Both models are flat (no $defs).
    docs = DocumentsRerankRequest.model_json_schema()
    if infinity:
        schema, shown = docs, examples("documents")
    else:
        schema = {"oneOf": [TeiRerankRequest.model_json_schema(), docs]}
        shown = {"tei": examples("tei")["basic"], "documents": examples("documents")["basic"]}
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema,
                                                              "examples": shown}}}}


def _answers(infinity: bool) -> dict[int | str, dict[str, Any]]:
    if infinity:
        ok = {"model": DocumentsRerankResponse, "description": "Ranked results, best first."}
    else:
        ok = {"model": RerankAnswer, "description": "A bare list for a texts body (TEI); an "
              "object of results for a documents body (Infinity, vLLM). Best first."}
    return {200: ok, **error_responses(*RERANK_STATUSES)}


def _parse(raw: bytes, documents_only: bool) -> TeiRerankRequest | DocumentsRerankRequest:
    try:
        data = json.loads(raw)
    except RecursionError as exc:
        raise ApiError(400, "invalid_request_error",
                       "request body is not valid JSON (nested too deeply)") from exc
    except ValueError as exc:
        raise ApiError(400, "invalid_request_error", "request body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_request_error", "body: must be a JSON object")
    # Neither field: validate as TEI, so the error names the field TEI clients expect.
    shaped = documents_only or ("documents" in data and "texts" not in data)
    model = DocumentsRerankRequest if shaped else TeiRerankRequest
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from exc


def router(ctx: DialectContext) -> APIRouter:
    """``/rerank`` (TEI and vLLM shapes) and ``/infinity/rerank`` over ``ctx.service``."""
    service = ctx.service
    settings = service.settings
    api = APIRouter()

    async def rerank_tei(body: TeiRerankRequest, response: Response) -> list[dict[str, Any]]:
        async def work() -> RerankOutcome:
            query = service.check_request(body.query, len(body.texts))
            service.check_texts(body.texts, "texts")
            side: Literal["left", "right"] = (
                "left" if body.truncation_direction.lower() == "left" else "right")
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
                instruction=body.instruction, min_score=body.min_score,
            )

        outcome = await ctx.run(ROUTE, body.model, work)
        fallback_meta(response, outcome)  # a bare list has no meta: the header says it
        return [
            {"index": r.index, "score": r.score,
             **({"text": body.texts[r.index]} if body.return_text else {}),
             **({"span": r.span} if body.return_spans else {})}
            for r in outcome.results
        ]

    async def rerank_documents(route: str, body: DocumentsRerankRequest, infinity: bool,
                               response: Response) -> dict[str, Any]:
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
                return_documents=False, raw_scores=body.raw_scores, truncation=truncation,
                instruction=body.instruction, min_score=body.min_score,
            )

        outcome = await ctx.run(route, body.model, work)
        fallback_meta(response, outcome)  # no meta in this shape: the header says it
        results = []
        for r in outcome.results:
            result: dict[str, Any] = {"index": r.index, "relevance_score": r.score}
            if body.return_spans:
                result["span"] = r.span
            if body.return_documents:
                text = texts[r.index]
                result["document"] = text if infinity else {"text": text}
            results.append(result)
        return {"id": str(uuid.uuid4()), "object": "rerank", "model": outcome.model,
                "created": int(time.time()), "results": results}

    @api.post(ROUTE, tags=["rerank"], responses=_answers(infinity=False),
              openapi_extra=_body_doc(infinity=False),
              summary="Rerank (text-embeddings-inference, or Infinity / vLLM with documents)")
    async def rerank(request: Request, response: Response) -> Any:
        body = _parse(await request.body(), documents_only=False)
        if isinstance(body, TeiRerankRequest):
            return await rerank_tei(body, response)
        return await rerank_documents(ROUTE, body, infinity=False, response=response)

    @api.post(INFINITY_ROUTE, tags=["rerank"], responses=_answers(infinity=True),
              openapi_extra=_body_doc(infinity=True),
              summary="Rerank (Infinity's shape: documents as bare strings)")
    async def rerank_infinity(request: Request, response: Response) -> Any:
        body = _parse(await request.body(), documents_only=True)
        assert isinstance(body, DocumentsRerankRequest)
        return await rerank_documents(INFINITY_ROUTE, body, infinity=True, response=response)

    return api
