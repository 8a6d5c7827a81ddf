"""Jina AI Reranker: ``POST {base}/v1/rerank``.

Request: ``model``, ``query``, ``documents`` (strings), ``top_n``, ``return_documents``
(sent as ``false``: the caller already has the documents).
Response: ``{model, usage: {total_tokens}, results: [{index, relevance_score, document?}]}``.

Limits: no per-request document cap was found in Jina's public reference; 1,000 a request is
the default here, like the others (set ``max_documents_per_request`` to change it). Documents
longer than the model's window are handled server-side.

Source (checked for this module): https://jina.ai/reranker/ (API reference and request builder)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from reranker.providers.base import RerankProvider, scores_from_results

__all__ = ["JinaProvider"]


class JinaProvider(RerankProvider):
    """Jina AI's rerank endpoint (``jina-reranker-v2-base-multilingual``, ...)."""

    name = "jina"
    default_base_url = "https://api.jina.ai"
    path = "/v1/rerank"
    default_api_key_env = "JINA_API_KEY"
    default_max_documents = 1000

    def build_payload(self, query: str, documents: Sequence[str]) -> dict[str, Any]:
        return {
            "model": self.model,
            "query": query,
            "documents": list(documents),
            "top_n": len(documents),
            "return_documents": False,
        }

    def parse_response(self, body: Any, n_documents: int) -> np.ndarray:
        return scores_from_results(body, "results", n_documents, provider=self.name)
