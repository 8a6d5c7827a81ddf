"""The ``llm`` backend: a :class:`RerankerBackend` over a hosted rerank API.

It splits candidate sets larger than one request allows into consecutive chunks, sends the
chunks concurrently (at most ``max_concurrency`` in flight), and concatenates the per-chunk
scores back into input order. Every request asks for a score for every document it carries
(``top_n``/``top_k`` = chunk size): ranking and ``top_k`` are ``reranker.scoring``'s job.

The sync :meth:`ProviderBackend.score` runs the async path on a private event loop
(``reranker.concurrency.run_sync``), in a worker thread when the calling thread already runs a
loop, so that sync use inside async frameworks does not deadlock. Many requests at once (the
batch entry point) are scored concurrently, each failing alone.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import httpx
import numpy as np

from reranker.backends.base import (
    ItemScores,
    ScoreItem,
    SingleItemBackend,
    check_instruction,
    check_truncation,
)
from reranker.concurrency import gather_or_cancel, run_sync
from reranker.config import LlmConfig
from reranker.errors import BackendError, ConfigError
from reranker.providers.base import RerankProvider
from reranker.providers.client import ApiKey, ProviderHttpClient, RetryPolicy
from reranker.registry import provider_class, provider_truncation_fields
from reranker.types import Truncation

__all__ = ["ProviderBackend", "build_provider_backend"]

_T = TypeVar("_T")

class ProviderBackend(SingleItemBackend):
    """Scores documents with a hosted rerank API.

    Build it with :func:`build_provider_backend` (reads the key from the environment) rather
    than directly.

    Args:
        provider: the wire format (``CohereProvider("rerank-v3.5")``).
        client: the retrying HTTP client pointed at the provider.
        max_documents_per_request: chunk size for large candidate sets.
    """

    max_length: int | None = None
    scores_are_probabilities: bool = True

    def __init__(
        self,
        provider: RerankProvider,
        client: ProviderHttpClient,
        *,
        max_documents_per_request: int,
    ) -> None:
        if max_documents_per_request < 1:
            raise ConfigError("max_documents_per_request must be >= 1")
        self.provider = provider
        self.client = client
        self.max_documents_per_request = max_documents_per_request
        self.name = f"{provider.name}:{provider.model}"

    def __repr__(self) -> str:
        return f"ProviderBackend(name={self.name!r}, base_url={self.client.base_url!r})"

    @property
    def truncation_fields(self) -> frozenset[str]:  # type: ignore[override]
        """``max_document_tokens`` where the API takes ``max_tokens_per_doc`` (Cohere); the
        provider cuts documents itself otherwise."""
        return provider_truncation_fields(type(self.provider))

    async def ascore(
        self, query: str, documents: Sequence[str], truncation: Truncation | None = None,
        instruction: str | None = None,
    ) -> np.ndarray:
        """One relevance score per document, in input order, as float32.

        ``truncation`` may only set ``max_document_tokens``, passed on as the provider's
        ``max_tokens_per_doc`` where it has one: the provider cuts documents itself. The
        provider APIs take no ``instruction``.
        """
        check_instruction(f"backend {self.name!r}", self.takes_instruction, instruction)
        if self.client.closed:
            raise BackendError(f"backend {self.name!r} is closed")
        provider = self._provider_for(truncation)
        docs = list(documents)
        if not docs:
            return np.empty(0, dtype=np.float32)
        size = self.max_documents_per_request
        chunks = [docs[start : start + size] for start in range(0, len(docs), size)]
        if len(chunks) == 1:
            parts = [await self._score_chunk(provider, query, chunks[0])]
        else:
            # One chunk failed: the call has failed, so stop spending quota on the others.
            parts = await gather_or_cancel(self._score_chunk(provider, query, c) for c in chunks)
        return np.concatenate(parts).astype(np.float32, copy=False)

    def _provider_for(self, truncation: Truncation | None) -> RerankProvider:
        cut = check_truncation(f"backend {self.name!r}", self.truncation_fields, truncation)
        if cut is None:
            return self.provider
        assert truncation is not None and truncation.max_document_tokens is not None
        return self.provider.with_max_tokens_per_doc(truncation.max_document_tokens)

    async def _score_chunk(
        self, provider: RerankProvider, query: str, documents: list[str]
    ) -> np.ndarray:
        payload = provider.build_payload(query, documents)
        body = await self.client.post_json(provider.path, payload)
        return provider.parse_response(body, len(documents))

    def score(
        self, query: str, documents: Sequence[str], truncation: Truncation | None = None,
        instruction: str | None = None,
    ) -> np.ndarray:
        """The sync form of :meth:`ascore`; safe to call from inside a running event loop."""
        check_instruction(f"backend {self.name!r}", self.takes_instruction, instruction)
        docs = list(documents)
        return self._run_sync(lambda: self.ascore(query, docs, truncation))

    def score_batch(self, items: Sequence[ScoreItem]) -> list[ItemScores]:
        """The sync form of :meth:`ascore_batch` (items scored concurrently)."""
        return self._run_sync(lambda: self.ascore_batch(items))

    def _run_sync(self, factory: Callable[[], Awaitable[_T]]) -> _T:
        async def run_and_release() -> _T:
            try:
                return await factory()
            finally:
                # The private loop ends with this call: close its client while it still runs.
                await self.client.aclose_current_loop()

        return run_sync(run_and_release)

    async def aclose(self) -> None:
        """Close the HTTP clients (this loop's awaited). Safe to call twice."""
        await self.client.aclose()

    def close(self) -> None:
        """Close the HTTP clients. Safe to call twice."""
        self.client.close()


def build_provider_backend(
    config: LlmConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    environ: Mapping[str, str] | None = None,
) -> ProviderBackend:
    """Build the backend an ``llm`` config describes, reading the API key from the environment.

    Example:
        >>> cfg = LlmConfig(provider="cohere", model="rerank-v3.5")       # doctest: +SKIP
        >>> build_provider_backend(cfg).name                               # doctest: +SKIP
        'cohere:rerank-v3.5'

    Args:
        config: the validated ``llm`` config.
        transport: an ``httpx`` transport to use instead of the network (tests).
        environ: where to look the key up; default ``os.environ``.

    Raises:
        ConfigError: unknown provider, missing key variable (named, its value never shown),
            a base URL that is not http(s), or limits the provider does not accept.
    """
    cls = provider_class(config.provider)
    provider = cls(config.model, max_tokens_per_doc=config.max_tokens_per_doc)

    env_name = config.api_key_env or cls.default_api_key_env
    value = (os.environ if environ is None else environ).get(env_name, "").strip()
    if not value:
        raise ConfigError(
            f"no API key for {cls.name}: the environment variable {env_name} is not set or is "
            "empty (set it, or name another variable with 'api_key_env')"
        )

    base_url = config.base_url or cls.default_base_url
    try:
        scheme = httpx.URL(base_url).scheme
    except httpx.InvalidURL as exc:
        raise ConfigError(f"invalid base_url {base_url!r}") from exc
    if scheme not in ("http", "https"):
        raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")

    max_docs = config.max_documents_per_request or cls.default_max_documents
    if cls.hard_max_documents is not None and max_docs > cls.hard_max_documents:
        raise ConfigError(
            f"{cls.name} accepts at most {cls.hard_max_documents} documents a request; "
            f"max_documents_per_request={max_docs}"
        )

    policy = RetryPolicy(
        timeout_s=config.timeout_s,
        max_retries=config.max_retries,
        backoff_base_s=config.backoff_base_s,
        backoff_max_s=config.backoff_max_s,
    )
    client = ProviderHttpClient(
        cls.name,
        base_url,
        ApiKey(value),
        policy,
        max_concurrency=config.max_concurrency,
        transport=transport,
    )
    return ProviderBackend(provider, client, max_documents_per_request=max_docs)
