"""The ``llm`` backend variant: Cohere, Jina and Voyage rerank APIs over HTTP.

One small class per provider (payload out, response in: :mod:`.cohere`, :mod:`.jina`,
:mod:`.voyage`; ``reranker.config.PROVIDERS`` names them), one shared retrying async client
(:mod:`.client`) and one backend that splits, sends and merges (:mod:`.backend`). See
``docs/providers.md`` for the wire formats, limits and the provider documentation they were
checked against.

Example:
    >>> from reranker import Reranker                                       # doctest: +SKIP
    >>> Reranker("cohere:rerank-v3.5").rerank("q", ["a", "b"], top_k=1)     # doctest: +SKIP
"""

from __future__ import annotations

from reranker.providers.backend import ProviderBackend, build_provider_backend
from reranker.providers.base import RerankProvider
from reranker.providers.client import ApiKey, ProviderHttpClient, RetryPolicy
from reranker.providers.cohere import CohereProvider
from reranker.providers.jina import JinaProvider
from reranker.providers.voyage import VoyageProvider

__all__ = [
    "build_provider_backend",
    "ProviderBackend",
    "RerankProvider",
    "CohereProvider",
    "JinaProvider",
    "VoyageProvider",
    "ApiKey",
    "ProviderHttpClient",
    "RetryPolicy",
]
