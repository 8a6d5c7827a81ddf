"""Voyage AI rerankers: ``POST {base}/v1/rerank``.

Request: ``model``, ``query``, ``documents`` (strings), ``top_k``, ``truncation`` (sent as
``true``: over-long query/document pairs are truncated server-side to the model's context
instead of failing the request), ``return_documents`` (default false, not sent).
Response: ``{object: "list", data: [{index, relevance_score}], model, usage: {total_tokens}}``.

Limits: at most 1,000 documents a request, and a total of "query tokens x documents + all
document tokens" of 600K (rerank-2.5, rerank-2.5-lite, rerank-2, rerank-2-lite) or 300K
(rerank-1, rerank-lite-1). The token cap cannot be checked without Voyage's tokenizer: a request
over it is a 400 (``ProviderStatusError``); lower ``max_documents_per_request`` to avoid it.

Sources (checked for this module):
- https://docs.voyageai.com/reference/reranker-api
- https://docs.voyageai.com/docs/reranker
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from reranker.providers.base import RerankProvider, scores_from_results

__all__ = ["VoyageProvider"]


class VoyageProvider(RerankProvider):
    """Voyage AI's rerank endpoint (``rerank-2.5``, ``rerank-2.5-lite``, ...)."""

    name = "voyage"
    default_base_url = "https://api.voyageai.com"
    path = "/v1/rerank"
    default_api_key_env = "VOYAGE_API_KEY"
    default_max_documents = 1000
    hard_max_documents = 1000

    def build_payload(self, query: str, documents: Sequence[str]) -> dict[str, Any]:
        return {
            "model": self.model,
            "query": query,
            "documents": list(documents),
            "top_k": len(documents),
            "truncation": True,
        }

    def parse_response(self, body: Any, n_documents: int) -> np.ndarray:
        return scores_from_results(body, "data", n_documents, provider=self.name)
