"""The Python API: :class:`Reranker` and the module-level :func:`rerank`."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, cast

from reranker.backends import RerankerBackend, build_backend
from reranker.backends.base import (
    check_instruction,
    check_truncation,
    search_units_of,
    spans_of,
    tokens_of,
)
from reranker.config import BackendConfig, parse_backend_config
from reranker.errors import InvalidInputError
from reranker.scoring import build_results, check_min_score, check_scores, check_top_k
from reranker.types import (
    Document,
    RerankResults,
    Truncation,
    Usage,
)

__all__ = ["Reranker", "rerank"]


class Reranker:
    """Rerank documents for a query with any backend.

    Example:
        >>> rr = Reranker("fast")                                    # doctest: +SKIP
        >>> rr.rerank("what is ONNX?", ["a format for models", "a fish"], top_k=1)  # doctest: +SKIP
        [RerankResult(index=0, score=0.98, document='a format for models')]

    Args:
        model: a backend config, a mapping with ``type``, or a shorthand string (see
            :func:`reranker.parse_backend_config`). Default: the ``fast`` preset.
        backend: an already built backend to use instead (``model`` is then ignored).
    """

    def __init__(
        self, model: BackendConfig | dict[str, Any] | str = "fast", *,
        backend: RerankerBackend | None = None,
    ) -> None:
        self.config: BackendConfig | None = None if backend else parse_backend_config(model)
        self.backend: RerankerBackend = backend or build_backend(self.config)

    @property
    def name(self) -> str:
        return self.backend.name

    def _prepare(
        self, query: object, documents: object, top_k: object, text_field: str
    ) -> tuple[str, list[str], int | None]:
        from reranker.models.vision.inputs import rerank_inputs

        # Image documents ({"image": ..., "text": ...}) reach only backends that take them.
        q, docs = rerank_inputs(query, documents, text_field, backend=self.backend.name,
                                takes_images=bool(getattr(self.backend, "takes_images", False)))
        return cast(str, q), cast(list[str], docs), check_top_k(top_k)

    def _truncation(self, max_tokens_per_doc: object) -> Truncation | None:
        """The truncation a call asks for, refused here if the backend does not apply it."""
        if max_tokens_per_doc is None:
            return None
        if isinstance(max_tokens_per_doc, bool) or not isinstance(max_tokens_per_doc, int) or (
                max_tokens_per_doc < 1):
            raise InvalidInputError(
                f"max_tokens_per_doc must be an integer >= 1, got {max_tokens_per_doc!r}",
                param="max_tokens_per_doc",
            )
        return check_truncation(
            f"backend {self.backend.name!r}", self.backend.truncation_fields,
            Truncation(max_document_tokens=max_tokens_per_doc),
        )

    def _instruction(self, instruction: object) -> dict[str, str]:
        """The ``instruction`` keyword of a score call, refused here if the backend takes none
        (only given when the call gives one, so backends written before it still work)."""
        if instruction is None:
            return {}
        checked = check_instruction(
            f"backend {self.backend.name!r}", self.backend.takes_instruction, instruction)
        return {} if checked is None else {"instruction": checked}

    def _min_score(self, min_score: object, raw_scores: bool) -> float | None:
        """The call's threshold, else the model's configured one (a probability, so not
        applied to raw scores)."""
        asked = check_min_score(min_score)
        if asked is not None or raw_scores or self.config is None:
            return asked
        return self.config.min_score

    def _finish(
        self, raw: Any, documents: Sequence[Document], n: int, top_k: int | None,
        return_documents: bool, raw_scores: bool, min_score: float | None,
    ) -> RerankResults:
        scores = check_scores(raw, n, source=f"backend {self.backend.name!r}")
        results = RerankResults(build_results(
            scores, documents,
            scores_are_probabilities=self.backend.scores_are_probabilities,
            top_k=top_k, raw_scores=raw_scores, return_documents=return_documents,
            min_score=min_score, spans=spans_of(raw),
        ))
        billed = search_units_of(raw)
        results.usage = Usage(Usage.search_units_for(n) if billed is None else billed,
                              tokens_of(raw))
        return results

    def rerank(
        self, query: str, documents: Sequence[Document], *, top_k: int | None = None,
        return_documents: bool = True, raw_scores: bool = False, text_field: str = "text",
        max_tokens_per_doc: int | None = None, instruction: str | None = None,
        min_score: float | None = None,
    ) -> RerankResults:
        """Score every document against the query and return them best first.

        Args:
            query: the search query (non-empty).
            documents: strings, or mappings whose ``text_field`` holds the text.
            top_k: keep only the best ``top_k`` results (>= 1); default all.
            return_documents: attach each document to its result.
            raw_scores: return logits instead of probabilities (local models).
            text_field: the key holding the text in mapping documents.
            max_tokens_per_doc: score only the first this many tokens of each document
                (local models; the model's window still applies; passed on to Cohere).
                Default: all the window holds.
            instruction: the task instruction of an instruction-following reranker
                (Qwen3-Reranker); default the model's configured one.
            min_score: drop results scoring below this (on the score returned: a probability
                unless ``raw_scores``); with ``top_k``, at most ``top_k`` results, all at or
                above it. Default: the model's configured ``min_score`` (not applied to raw
                scores), else none.

        Returns:
            The results best first (a list), with the call's :class:`~reranker.types.Usage`
            as ``.usage``. With a model that chunks long documents, each result's ``span`` is
            the character span of the document's best window.

        Raises:
            InvalidInputError: empty query or documents, bad types, ``top_k`` < 1,
                ``max_tokens_per_doc`` with a backend that cuts documents itself,
                ``instruction`` with a model that takes none, ``min_score`` not a number.
            RerankerError: the backend failed (subclass says how).
        """
        q, texts, k = self._prepare(query, documents, top_k, text_field)
        threshold = self._min_score(min_score, raw_scores)
        raw = self.backend.score(
            q, texts, self._truncation(max_tokens_per_doc), **self._instruction(instruction))
        return self._finish(raw, documents, len(texts), k, return_documents, raw_scores,
                            threshold)

    async def arerank(
        self, query: str, documents: Sequence[Document], *, top_k: int | None = None,
        return_documents: bool = True, raw_scores: bool = False, text_field: str = "text",
        max_tokens_per_doc: int | None = None, instruction: str | None = None,
        min_score: float | None = None,
    ) -> RerankResults:
        """The async form of :meth:`rerank`; CPU work runs off the event loop."""
        q, texts, k = self._prepare(query, documents, top_k, text_field)
        threshold = self._min_score(min_score, raw_scores)
        raw = await self.backend.ascore(
            q, texts, self._truncation(max_tokens_per_doc), **self._instruction(instruction))
        return self._finish(raw, documents, len(texts), k, return_documents, raw_scores,
                            threshold)

    def close(self) -> None:
        """Release the backend's resources."""
        self.backend.close()

    def __enter__(self) -> Reranker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Reranker({self.backend.name!r})"


_DEFAULT_CACHE: dict[str, Reranker] = {}
_CACHE_LOCK = threading.Lock()


def rerank(
    query: str, documents: Sequence[Document], *, model: BackendConfig | dict[str, Any] | str =
    "fast", top_k: int | None = None, return_documents: bool = True, raw_scores: bool = False,
    text_field: str = "text", max_tokens_per_doc: int | None = None,
    instruction: str | None = None, min_score: float | None = None,
) -> RerankResults:
    """Rerank with a model loaded once per process and reused across calls.

    Example:
        >>> from reranker import rerank                               # doctest: +SKIP
        >>> rerank("capital of France", ["Paris is...", "Berlin is..."], top_k=1)  # doctest: +SKIP
    """
    cfg = parse_backend_config(model)
    if cfg.type == "plugin" and ":" not in cfg.name:
        # A registered name can be re-registered with another backend: look it up every time.
        with Reranker(cfg) as fresh:
            return fresh.rerank(
                query, documents, top_k=top_k, return_documents=return_documents,
                raw_scores=raw_scores, text_field=text_field,
                max_tokens_per_doc=max_tokens_per_doc, instruction=instruction,
                min_score=min_score,
            )
    key = cfg.model_dump_json()
    with _CACHE_LOCK:
        rr = _DEFAULT_CACHE.get(key)
        if rr is None:
            rr = _DEFAULT_CACHE[key] = Reranker(cfg)
    return rr.rerank(
        query, documents, top_k=top_k, return_documents=return_documents,
        raw_scores=raw_scores, text_field=text_field, max_tokens_per_doc=max_tokens_per_doc,
        instruction=instruction, min_score=min_score,
    )
