"""The API dialects the ingress speaks, one translator module each, over ``RerankService``.

Each module turns its wire request into one :meth:`RerankService.rerank` call and the outcome
back into its wire response; ``deployments.serve.http_api`` mounts their routers next to the
shared routes, middleware and error handling.

- :mod:`.cohere_v1`: ``POST /v1/rerank`` (Cohere v1 and Jina).
- :mod:`.cohere_v2`: ``POST /v2/rerank`` (Cohere v2).
- :mod:`.tei`: ``POST /rerank`` (text-embeddings-inference, a bare list).
"""

from __future__ import annotations

from deployments.serve.dialects import cohere_v1, cohere_v2, tei
from deployments.serve.dialects.context import DialectContext, RunRerank

__all__ = ["DIALECTS", "DialectContext", "RunRerank"]

DIALECTS = (cohere_v1, cohere_v2, tei)
