"""``POST /v1/rerank``: the Cohere v1 and Jina dialect (strings or objects, ``rank_fields``)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response

from deployments.serve.api_docs import RERANK_STATUSES, error_responses, examples
from deployments.serve.dialects.context import DialectContext, fallback_meta, usage_meta
from deployments.serve.schemas import V1RerankRequest, V1RerankResponse
from deployments.serve.service import RerankOutcome, texts_for
from reranker.types import Truncation

__all__ = ["ROUTE", "router"]

ROUTE = "/v1/rerank"


def router(ctx: DialectContext) -> APIRouter:
    """The v1 route over ``ctx.service``."""
    service = ctx.service
    api = APIRouter()

    @api.post(ROUTE, response_model=V1RerankResponse, response_model_exclude_none=True,
              tags=["rerank"], responses=error_responses(*RERANK_STATUSES),
              summary="Rerank (Cohere v1 and Jina shape)")
    async def rerank_v1(
        body: Annotated[V1RerankRequest, Body(openapi_examples=examples("v1"))],
        request: Request, response: Response,
    ) -> dict[str, Any]:
        async def work() -> RerankOutcome:
            query = service.check_request(body.query, len(body.documents))
            texts = texts_for(body.documents, body.rank_fields, images=service.settings.images)
            service.check_texts(texts)
            truncation = None
            if body.max_chunks_per_doc is not None:
                service.check_cut_supported(body.model, "max_chunks_per_doc")
                truncation = Truncation(max_chunks=body.max_chunks_per_doc)
            return await service.rerank(
                model=body.model, query=query, texts=texts, documents=body.documents,
                top_n=body.top_n, return_documents=body.return_documents,
                truncation=truncation, instruction=body.instruction, min_score=body.min_score,
            )

        outcome = await ctx.run(ROUTE, body.model, work)
        results = [
            {"index": r.index, "relevance_score": r.score,
             "document": {"text": r.document} if isinstance(r.document, str) else r.document,
             "span": r.span if body.return_spans else None}
            for r in outcome.results
        ]
        meta = {"api_version": {"version": "1"}, **usage_meta(outcome),
                **ctx.debug_meta(request, outcome), **fallback_meta(response, outcome)}
        tokens = outcome.usage.tokens if outcome.usage is not None else None
        return {"id": str(uuid.uuid4()), "model": outcome.model, "results": results, "meta": meta,
                # Jina's shape of the same count, as this route is Jina's too.
                "usage": None if tokens is None else {"total_tokens": tokens}}

    return api
