"""What a provider class is: a payload builder and a response parser, nothing else.

The HTTP work (retries, timeouts, keys) is :mod:`reranker.providers.client`'s; splitting large
candidate sets and merging results is :mod:`reranker.providers.backend`'s. A provider class only
knows its wire format: the endpoint, the request body for one sub-request, and how to turn the
response into one score per document, in input order.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from reranker.errors import ConfigError, InvalidInputError, ProviderResponseError

__all__ = ["RerankProvider", "scores_from_results"]


class RerankProvider(ABC):
    """One hosted rerank API's wire format.

    Class attributes:
        name: the provider's name in configs (``"cohere"``).
        default_base_url: scheme and host of the public API.
        path: the rerank endpoint, appended to the base URL.
        default_api_key_env: the environment variable read when ``api_key_env`` is unset.
        default_max_documents: documents per request when the config does not say.
        hard_max_documents: the most documents the API accepts in one request, if documented.
    """

    name: ClassVar[str]
    default_base_url: ClassVar[str]
    path: ClassVar[str]
    default_api_key_env: ClassVar[str]
    default_max_documents: ClassVar[int] = 1000
    hard_max_documents: ClassVar[int | None] = None
    supports_max_tokens_per_doc: ClassVar[bool] = False

    def __init__(self, model: str, *, max_tokens_per_doc: int | None = None) -> None:
        if max_tokens_per_doc is not None and not self.supports_max_tokens_per_doc:
            raise ConfigError(
                f"max_tokens_per_doc is not supported by {self.name}; it truncates long "
                "documents server-side (see docs/providers.md)"
            )
        self.model = model
        self.max_tokens_per_doc = max_tokens_per_doc

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"

    def with_max_tokens_per_doc(self, max_tokens_per_doc: int) -> RerankProvider:
        """This provider with one request's own ``max_tokens_per_doc`` (it wins over the
        config's).

        Raises:
            InvalidInputError: the API has no such setting.
        """
        if not self.supports_max_tokens_per_doc:
            raise InvalidInputError(
                f"max_tokens_per_doc is not supported by {self.name}; it truncates long "
                "documents server-side",
                param="max_tokens_per_doc",
            )
        clone = copy.copy(self)
        clone.max_tokens_per_doc = max_tokens_per_doc
        return clone

    @abstractmethod
    def build_payload(self, query: str, documents: Sequence[str]) -> dict[str, Any]:
        """The JSON body for one request that scores every document in ``documents``."""

    @abstractmethod
    def parse_response(self, body: Any, n_documents: int) -> np.ndarray:
        """One float32 score per document of the request, in request order.

        Raises:
            ProviderResponseError: the body lacks results, or indices are missing, repeated or
                out of range, or a score is not a finite number.
        """


def scores_from_results(body: Any, key: str, n_documents: int, *, provider: str) -> np.ndarray:
    """Read ``body[key] = [{index, relevance_score}, ...]`` into scores in input order.

    Every index in ``range(n_documents)`` must appear exactly once: the backend always asks for
    all of them, so a short list is a provider failure, not a ranking.
    """
    if not isinstance(body, dict):
        raise ProviderResponseError(
            f"{provider} response is a {type(body).__name__}, expected a JSON object",
            provider=provider,
        )
    items = body.get(key)
    if not isinstance(items, list):
        raise ProviderResponseError(
            f"{provider} response has no {key!r} list", provider=provider
        )
    scores = np.full(n_documents, np.nan, dtype=np.float64)
    seen = np.zeros(n_documents, dtype=bool)
    for pos, item in enumerate(items):
        if not isinstance(item, dict):
            raise ProviderResponseError(
                f"{provider} response {key}[{pos}] is not an object", provider=provider
            )
        index, score = item.get("index"), item.get("relevance_score")
        if isinstance(index, bool) or not isinstance(index, int):
            raise ProviderResponseError(
                f"{provider} response {key}[{pos}] has no integer 'index'", provider=provider
            )
        if not 0 <= index < n_documents:
            raise ProviderResponseError(
                f"{provider} response index {index} is out of range for {n_documents} documents",
                provider=provider,
            )
        if seen[index]:
            raise ProviderResponseError(
                f"{provider} response lists index {index} twice", provider=provider
            )
        if (
            isinstance(score, bool)
            or not isinstance(score, (int, float))
            or not math.isfinite(score)
        ):
            raise ProviderResponseError(
                f"{provider} response {key}[{pos}] has no finite 'relevance_score'",
                provider=provider,
            )
        seen[index] = True
        scores[index] = score
    if not seen.all():
        missing = np.flatnonzero(~seen)
        shown = ", ".join(str(i) for i in missing[:5]) + (", ..." if missing.size > 5 else "")
        raise ProviderResponseError(
            f"{provider} response scored {int(seen.sum())} of {n_documents} documents; "
            f"missing indices: {shown}",
            provider=provider,
        )
    return scores.astype(np.float32)
