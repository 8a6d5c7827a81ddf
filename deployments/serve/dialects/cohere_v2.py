"""``POST /v2/rerank``: the Cohere v2 dialect (string documents, ``max_tokens_per_doc``)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response

from deployments.serve.api_docs import RERANK_STATUSES, error_responses, examples
from deployments.serve.dialects.context import DialectContext, fallback_meta, usage_meta
from deployments.serve.schemas import V2RerankRequest, V2RerankResponse
from deployments.serve.service import RerankOutcome, texts_for
from reranker.types import Truncation

__all__ = ["ROUTE", "router"]

ROUTE = "/v2/rerank"


def router(ctx: DialectContext) -> APIRouter:
    """The v2 route over ``ctx.service``."""
    service = ctx.service
    api = APIRouter()

    @api.post(ROUTE, response_model=V2RerankResponse, response_model_exclude_none=True,
              tags=["rerank"], responses=error_responses(*RERANK_STATUSES),
              summary="Rerank (Cohere v2 shape)")
    async def rerank_v2(
        body: Annotated[V2RerankRequest, Body(openapi_examples=examples("v2"))],
        request: Request, response: Response,
    ) -> dict[str, Any]:
        texts: list[str] = []

        async def work() -> RerankOutcome:
            query = service.check_request(body.query, len(body.documents))
            texts.extend(texts_for(body.documents, images=service.settings.images))
            service.check_texts(texts)
            truncation = None
            if body.max_tokens_per_doc is not None:
                service.check_cut_supported(body.model, "max_tokens_per_doc")
                truncation = Truncation(max_document_tokens=body.max_tokens_per_doc)
            return await service.rerank(
                model=body.model, query=query, texts=texts, documents=None, top_n=body.top_n,
                return_documents=False, truncation=truncation, instruction=body.instruction,
                min_score=body.min_score,
            )

        outcome = await ctx.run(ROUTE, body.model, work)
        results = [
            {"index": r.index, "relevance_score": r.score,
             "document": {"text": texts[r.index]} if body.return_documents else None,
             "span": r.span if body.return_spans else None}
            for r in outcome.results
        ]
        meta = {"api_version": {"version": "2"}, **usage_meta(outcome),
                **ctx.debug_meta(request, outcome), **fallback_meta(response, outcome)}
        return {"id": str(uuid.uuid4()), "results": results, "meta": meta}

    return api
