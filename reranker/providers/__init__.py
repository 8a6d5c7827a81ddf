"""The ``llm`` backend variant: every rerank provider of liter-llm, with our guarantees.

:mod:`.catalog` lists the providers (liter-llm's own table, read at run time, plus what this
project knows of each wire format); :mod:`.client` calls one through liter-llm with explicit
timeouts, bounded retries, a byte cap on answers and keys kept out of every message; and
:mod:`.backend` splits, sends and merges. See ``docs/providers.md``.

Example:
    >>> from reranker import Reranker                                       # doctest: +SKIP
    >>> Reranker("cohere:rerank-v3.5").rerank("q", ["a", "b"], top_k=1)     # doctest: +SKIP
    >>> print(providers_markdown())                                         # doctest: +SKIP
"""

from __future__ import annotations

from reranker.providers.backend import ProviderBackend, build_provider_backend
from reranker.providers.catalog import (
    ProviderInfo,
    provider_info,
    provider_names,
    providers_markdown,
    rerank_providers,
)
from reranker.providers.client import ApiKey, ProviderClient, RetryPolicy

__all__ = [
    "build_provider_backend",
    "ProviderBackend",
    "ProviderInfo",
    "provider_info",
    "provider_names",
    "providers_markdown",
    "rerank_providers",
    "ApiKey",
    "ProviderClient",
    "RetryPolicy",
]
