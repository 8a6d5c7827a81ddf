"""``POST /rerank``: the text-embeddings-inference dialect (``texts``, a bare list back)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter

from deployments.serve.dialects.context import DialectContext
from deployments.serve.schemas import TeiRerankRequest, TeiResult
from deployments.serve.service import RerankOutcome
from reranker.types import Truncation

__all__ = ["ROUTE", "router"]

ROUTE = "/rerank"


def router(ctx: DialectContext) -> APIRouter:
    """The TEI route over ``ctx.service``."""
    service = ctx.service
    settings = service.settings
    api = APIRouter()

    @api.post(ROUTE, response_model=list[TeiResult], response_model_exclude_none=True,
              tags=["rerank"], summary="Rerank (text-embeddings-inference shape)")
    async def rerank_tei(body: TeiRerankRequest) -> list[dict[str, Any]]:
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
                min_score=body.min_score,
            )

        outcome = await ctx.run(ROUTE, body.model, work)
        return [
            {"index": r.index, "score": r.score,
             "text": body.texts[r.index] if body.return_text else None,
             "span": r.span if body.return_spans else None}
            for r in outcome.results
        ]

    return api
