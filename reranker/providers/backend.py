"""The ``llm`` backend: a :class:`RerankerBackend` over a hosted rerank API, via liter-llm.

It splits candidate sets larger than one request allows into consecutive chunks, sends the
chunks concurrently (at most ``max_concurrency`` in flight), and concatenates the per-chunk
scores back into input order. Every request asks for a score for every document it carries
(``top_n`` = chunk size): ranking and ``top_k`` are ``reranker.scoring``'s job. An answer must
name every index of its chunk exactly once, each a finite score; anything else is a
:class:`ProviderResponseError`.

The sync :meth:`ProviderBackend.score` runs the async path on a private event loop
(``reranker.concurrency.run_sync``), in a worker thread when the calling thread already runs a
loop, so that sync use inside async frameworks does not deadlock. Many requests at once (the
batch entry point) are scored concurrently, each failing alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import numpy as np

from reranker.backends.base import (
    ItemScores,
    ScoredArray,
    ScoreItem,
    SingleItemBackend,
    check_instruction,
    check_truncation,
)
from reranker.concurrency import gather_or_cancel, run_sync
from reranker.config import LlmConfig
from reranker.errors import BackendError, ConfigError, ProviderResponseError
from reranker.providers.catalog import ProviderInfo, provider_info
from reranker.providers.client import ApiKey, ProviderAnswer, ProviderClient, RetryPolicy
from reranker.types import Truncation

__all__ = ["ProviderBackend", "build_provider_backend", "scores_from_results"]

_T = TypeVar("_T")


def scores_from_results(
    results: Sequence[tuple[int, float]], n_documents: int, *, provider: str
) -> np.ndarray:
    """``(index, score)`` pairs into one float32 score per document, in input order.

    Every index in ``range(n_documents)`` must appear exactly once: the backend always asks for
    all of them, so a short list is a provider failure, not a ranking.
    """
    scores = np.full(n_documents, np.nan, dtype=np.float64)
    seen = np.zeros(n_documents, dtype=bool)
    for index, score in results:
        if isinstance(index, bool) or not isinstance(index, int):
            raise ProviderResponseError(
                f"{provider} response has a non-integer index {index!r}", provider=provider)
        if not 0 <= index < n_documents:
            raise ProviderResponseError(
                f"{provider} response index {index} is out of range for {n_documents} "
                "documents", provider=provider)
        if seen[index]:
            raise ProviderResponseError(
                f"{provider} response repeats index {index}", provider=provider)
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(
                score):
            raise ProviderResponseError(
                f"{provider} response score for index {index} is not a finite number",
                provider=provider)
        seen[index] = True
        scores[index] = score
    if not seen.all():
        missing = np.flatnonzero(~seen)
        shown = ", ".join(str(i) for i in missing[:10]) + (", ..." if missing.size > 10 else "")
        raise ProviderResponseError(
            f"{provider} response has missing indices ({missing.size} of {n_documents}: "
            f"{shown})", provider=provider)
    return scores.astype(np.float32)


def _usage(meta: dict[str, Any] | None, path: tuple[str, str]) -> int | None:
    """``meta[a][b]`` when it is a non-negative integer (the provider's own usage count)."""
    group = (meta or {}).get(path[0])
    value = group.get(path[1]) if isinstance(group, dict) else None
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else None


class ProviderBackend(SingleItemBackend):
    """Scores documents with a hosted rerank API (any of liter-llm's rerank providers).

    Build it with :func:`build_provider_backend` (reads the key from the environment) rather
    than directly.

    Args:
        model: the provider's model id (``"rerank-v3.5"``).
        client: the liter-llm client with this project's timeouts, retries and limits.
        max_documents_per_request: chunk size for large candidate sets.
        max_tokens_per_doc: the configured per-document token cap (providers that take one).
        name: the backend's name (``"cohere:rerank-v3.5"``); default ``provider:model``.
    """

    max_length: int | None = None
    billable: ClassVar[bool] = True
    """Every call may be billed by the provider: a layer that resends requests must not
    resend one that reached this backend (``harden``'s resend rule reads it)."""

    def __init__(
        self,
        model: str,
        client: ProviderClient,
        *,
        max_documents_per_request: int,
        max_tokens_per_doc: int | None = None,
        name: str | None = None,
    ) -> None:
        if max_documents_per_request < 1:
            raise ConfigError("max_documents_per_request must be >= 1")
        self.model = model
        self.client = client
        self.info: ProviderInfo = client.info
        self.max_documents_per_request = max_documents_per_request
        self.max_tokens_per_doc = max_tokens_per_doc
        self.name = name or f"{self.info.name}:{model}"
        self.scores_are_probabilities = self.info.scores_are_probabilities

    def __repr__(self) -> str:
        return f"ProviderBackend(name={self.name!r}, base_url={self.client.base_url!r})"

    @property
    def truncation_fields(self) -> frozenset[str]:  # type: ignore[override]
        """``max_document_tokens`` where the API takes ``max_tokens_per_doc`` (Cohere); the
        provider cuts documents itself otherwise."""
        return _truncation_fields(self.info)

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
        extra = self._extra_body(truncation)
        docs = list(documents)
        if not docs:
            return np.empty(0, dtype=np.float32)
        size = self.max_documents_per_request
        chunks = [docs[start : start + size] for start in range(0, len(docs), size)]
        if len(chunks) == 1:
            answers = [await self.client.rerank(self.model, query, chunks[0], extra)]
        else:
            # One chunk failed: the call has failed, so stop spending quota on the others.
            answers = await gather_or_cancel(
                self.client.rerank(self.model, query, c, extra) for c in chunks)
        return self._merge(answers, chunks)

    def _merge(self, answers: Sequence[ProviderAnswer], chunks: list[list[str]]) -> np.ndarray:
        parts = [scores_from_results(a.results, len(c), provider=self.info.name)
                 for a, c in zip(answers, chunks, strict=True)]
        units = [_usage(a.meta, ("billed_units", "search_units")) for a in answers]
        tokens = [_usage(a.meta, ("tokens", "input_tokens")) for a in answers]
        return ScoredArray.of(
            np.concatenate(parts),
            search_units=None if None in units else sum(u or 0 for u in units),
            tokens=None if None in tokens else sum(t or 0 for t in tokens),
        )

    def _extra_body(self, truncation: Truncation | None) -> dict[str, Any]:
        extra = dict(self.info.extra_body)
        cut = check_truncation(f"backend {self.name!r}", self.truncation_fields, truncation)
        tokens = self.max_tokens_per_doc
        if cut is not None:
            assert truncation is not None
            tokens = truncation.max_document_tokens
        if tokens is not None:
            extra["max_tokens_per_doc"] = tokens
        return extra

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
        return run_sync(factory)

    async def aclose(self) -> None:
        """Close the client. Safe to call twice."""
        self.client.close()

    def close(self) -> None:
        """Close the client. Safe to call twice."""
        self.client.close()


def _truncation_fields(info: ProviderInfo) -> frozenset[str]:
    return frozenset({"max_document_tokens"}) if info.max_tokens_per_doc else frozenset()


def provider_truncation_fields(name: str) -> frozenset[str]:
    """What a provider's API applies of a request's truncation: a document token cap where it
    takes ``max_tokens_per_doc`` (Cohere), nothing otherwise."""
    return _truncation_fields(provider_info(name))


def build_provider_backend(
    config: LlmConfig,
    *,
    environ: Mapping[str, str] | None = None,
) -> ProviderBackend:
    """Build the backend an ``llm`` config describes, reading the API key from the environment.

    Example:
        >>> cfg = LlmConfig(provider="cohere", model="rerank-v3.5")       # doctest: +SKIP
        >>> build_provider_backend(cfg).name                               # doctest: +SKIP
        'cohere:rerank-v3.5'

    Args:
        config: the validated ``llm`` config.
        environ: where to look the key up; default ``os.environ``.

    Raises:
        ConfigError: unknown provider, missing key variable (named, its value never shown),
            a base URL that is not http(s), limits the provider does not accept, or liter-llm
            not installed (the message names the extra).
    """
    info = provider_info(config.provider)
    if config.max_tokens_per_doc is not None and not info.max_tokens_per_doc:
        raise ConfigError(
            f"max_tokens_per_doc is not supported by {info.name}; it truncates long "
            "documents server-side"
        )
    env = os.environ if environ is None else environ
    env_name = config.api_key_env or (info.key_env[0] if info.reads_key else None)
    value = env.get(env_name, "").strip() if env_name else ""
    if not value and (config.api_key_env or info.reads_key):
        raise ConfigError(
            f"no API key for {info.name}: the environment variable {env_name} is not set or "
            "is empty (set it, or name another variable with 'api_key_env')"
        )

    base_url = config.base_url or info.default_base_url
    if base_url is None:
        raise ConfigError(f"{info.name} has no default base URL: set 'base_url'")
    if urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).netloc:
        raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")

    max_docs = config.max_documents_per_request or info.default_max_documents
    if info.hard_max_documents is not None and max_docs > info.hard_max_documents:
        raise ConfigError(
            f"{info.name} accepts at most {info.hard_max_documents} documents a request; "
            f"max_documents_per_request={max_docs}"
        )

    policy = RetryPolicy(
        timeout_s=config.timeout_s,
        max_retries=config.max_retries,
        backoff_base_s=config.backoff_base_s,
        backoff_max_s=config.backoff_max_s,
    )
    client = ProviderClient(
        info, base_url, ApiKey(value), policy,
        max_concurrency=config.max_concurrency,
        max_response_bytes=config.max_response_bytes,
    )
    return ProviderBackend(
        config.model, client, max_documents_per_request=max_docs,
        max_tokens_per_doc=config.max_tokens_per_doc,
        name=f"{config.provider}:{config.model}",
    )
