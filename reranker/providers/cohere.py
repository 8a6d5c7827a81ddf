"""Cohere Rerank v2: ``POST {base}/v2/rerank``.

Request: ``model``, ``query``, ``documents`` (strings), ``top_n``, ``max_tokens_per_doc``
(optional; long documents are truncated server-side to it, Cohere's default is 4096).
Response: ``{id, results: [{index, relevance_score}], meta}``.

Limits: Cohere recommends at most 1,000 documents a request and rejects more than 10,000.

Sources (checked for this module):
- https://docs.cohere.com/reference/rerank
- https://docs.cohere.com/v2/docs/reranking-best-practices
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from reranker.providers.base import RerankProvider, scores_from_results

__all__ = ["CohereProvider"]


class CohereProvider(RerankProvider):
    """Cohere's v2 rerank endpoint (``rerank-v3.5``, ``rerank-multilingual-v3.0``, ...)."""

    name = "cohere"
    default_base_url = "https://api.cohere.com"
    path = "/v2/rerank"
    default_api_key_env = "COHERE_API_KEY"
    default_max_documents = 1000
    hard_max_documents = 10_000
    supports_max_tokens_per_doc = True

    def build_payload(self, query: str, documents: Sequence[str]) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "query": query,
            "documents": list(documents),
            "top_n": len(documents),
        }
        if self.max_tokens_per_doc is not None:
            payload["max_tokens_per_doc"] = self.max_tokens_per_doc
        return payload

    def parse_response(self, body: Any, n_documents: int) -> np.ndarray:
        return scores_from_results(body, "results", n_documents, provider=self.name)
