"""The backend contract: query and documents in, one raw float32 score per document out.

Every variant (local ONNX, provider API, plugin) implements :class:`RerankerBackend`. Backends
never sort, never apply activations and never see ``top_k``: that is ``reranker.scoring``'s job.

A backend declares which fields of a request's :class:`~reranker.types.Truncation` it applies
(``truncation_fields``); :func:`check_truncation` is the one place that refuses the others. Its
batch entry point takes many :class:`ScoreItem` at once (the Serve batcher and the Ray Data worker
call it), so batching layers never look inside a backend. :class:`SingleItemBackend` gives a
backend that scores one item at a time that entry point, scoring the items concurrently.

A request's ``instruction`` (the task description of an instruction-following reranker such as
Qwen3-Reranker) is a declared capability too: a backend says whether it takes one
(``takes_instruction``) and :func:`check_instruction` is the one place that refuses it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from reranker.concurrency import run_sync
from reranker.errors import BackendError, InvalidInputError, RerankerError
from reranker.types import TRUNCATION_FIELDS, Truncation

__all__ = [
    "TRUNCATION_FIELDS",
    "InProcessBackend",
    "ItemScores",
    "RerankerBackend",
    "ScoreItem",
    "ScoredArray",
    "SingleItemBackend",
    "as_reranker_error",
    "check_instruction",
    "check_truncation",
    "check_truncation_field",
    "spans_of",
    "tokens_of",
    "search_units_of",
]

# The request parameter that sets each truncation field (library and HTTP APIs alike).
_PARAMS = {
    "max_document_tokens": "max_tokens_per_doc",
    "side": "truncation_direction",
    "allow": "truncate",
    "max_chunks": "max_chunks_per_doc",
}


@dataclass(frozen=True)
class ScoreItem:
    """One (query, documents) request in a batch, with its own truncation and instruction
    (``None``: the model's configured one).

    ``cancel``, once set, tells the backend nobody waits for this item any more: it may stop
    the item's remaining work (the local backend skips its rows in the runs still to come)
    while the other items of the batch go on.
    """

    query: str
    documents: Sequence[str]
    truncation: Truncation | None = None
    instruction: str | None = None
    cancel: threading.Event | None = None


class ScoredArray(np.ndarray):
    """A backend's float32 score array that also says what scoring it cost and where.

    Backends that know more than the scores return this instead of a plain array; it *is* the
    score array, so every caller of the contract keeps working, and callers that want the
    extras read them with :func:`tokens_of` and :func:`spans_of` (``None`` for a plain array).
    The extras do not survive slicing or pickling: read them where the backend answered.

    Attributes:
        tokens: tokens run through the model for this item (every window, special tokens
            included).
        spans: per document, the character span ``(start, end)`` of its best-scoring window
            when the model chunks long documents, else ``None`` for that document.
        search_units: what a provider says it billed (Cohere's ``billed_units``), where it
            says; otherwise the caller counts them (``Usage.search_units_for``).
    """

    tokens: int | None
    spans: list[tuple[int, int] | None] | None
    search_units: int | None

    def __array_finalize__(self, obj: object) -> None:
        # Views and slices start without extras: a slice's token count would be wrong.
        self.tokens = None
        self.spans = None
        self.search_units = None

    @classmethod
    def of(
        cls, scores: np.ndarray, *, tokens: int | None = None,
        spans: list[tuple[int, int] | None] | None = None, search_units: int | None = None,
    ) -> ScoredArray:
        """``scores`` as float32 carrying ``tokens``, ``spans`` and ``search_units``."""
        out = np.asarray(scores, dtype=np.float32).view(cls)
        out.tokens = tokens
        out.spans = spans
        out.search_units = search_units
        return out


def tokens_of(scores: object) -> int | None:
    """The token count a backend attached to its scores, or ``None``."""
    return getattr(scores, "tokens", None) if isinstance(scores, ScoredArray) else None


def search_units_of(scores: object) -> int | None:
    """The search units a provider said it billed for these scores, or ``None``."""
    return getattr(scores, "search_units", None) if isinstance(scores, ScoredArray) else None


def spans_of(scores: object) -> list[tuple[int, int] | None] | None:
    """The best-window spans a backend attached to its scores, or ``None``."""
    return getattr(scores, "spans", None) if isinstance(scores, ScoredArray) else None


ItemScores = np.ndarray | RerankerError
"""What the batch entry point returns per item: its scores, or the error it failed with."""


@runtime_checkable
class RerankerBackend(Protocol):
    """What the library needs from a backend.

    Attributes:
        name: a short name for messages and metrics (``"preset:fast"``, ``"cohere:rerank-v3.5"``).
        max_length: tokens per pair the backend reads, or ``None`` when it does not say.
        scores_are_probabilities: scores are already in [0, 1] (providers); otherwise they are
            logits and ``reranker.scoring`` applies a sigmoid.
        truncation_fields: the :class:`~reranker.types.Truncation` fields it applies (a subset of
            :data:`TRUNCATION_FIELDS`); a request setting any other is refused.
        takes_instruction: it puts a request's ``instruction`` in its prompt (decoder
            rerankers); a request giving one to any other backend is refused.
    """

    name: str
    max_length: int | None
    scores_are_probabilities: bool
    truncation_fields: frozenset[str]
    takes_instruction: bool

    def score(
        self, query: str, documents: Sequence[str], truncation: Truncation | None = None,
        instruction: str | None = None,
    ) -> np.ndarray:
        """One raw score per document, in input order, as float32."""
        ...

    async def ascore(
        self, query: str, documents: Sequence[str], truncation: Truncation | None = None,
        instruction: str | None = None,
    ) -> np.ndarray:
        """The same as :meth:`score` without blocking the event loop."""
        ...

    def score_batch(self, items: Sequence[ScoreItem]) -> list[ItemScores]:
        """One float32 score array per item, in order; a failed item gets its error instead."""
        ...

    async def ascore_batch(self, items: Sequence[ScoreItem]) -> list[ItemScores]:
        """The same as :meth:`score_batch` without blocking the event loop."""
        ...

    def close(self) -> None:
        """Release sessions, clients and threads. Safe to call twice."""
        ...


def check_truncation_field(
    backend: str, supported: Collection[str], field: str, *, param: str | None = None
) -> None:
    """Refuse ``field`` unless it is in ``supported``.

    Args:
        backend: how messages name what serves the request (``"backend 'jina:m'"``).
        supported: the fields the backend applies.
        field: a :class:`~reranker.types.Truncation` field.
        param: the request field the error names; default the parameter that sets ``field``.

    Raises:
        InvalidInputError: naming ``param``.
    """
    if field in supported:
        return
    what = _PARAMS[field]
    takes = ", ".join(_PARAMS[f] for f in TRUNCATION_FIELDS if f in supported)
    raise InvalidInputError(
        f"{what} does not apply to {backend}, which cuts documents itself"
        + (f" (it takes only {takes})" if takes else ""),
        param=param or what,
    )


def check_truncation(
    backend: str, supported: Collection[str], truncation: Truncation | None
) -> Truncation | None:
    """The request's truncation if the backend applies all it asks for; ``None`` if it asks
    for nothing beyond the model's own settings.

    An error names ``max_tokens_per_doc`` for a document token cap, else the truncation's own
    ``field`` (``documents``, ``texts``).

    Raises:
        InvalidInputError: a field the backend does not apply is set.
    """
    if truncation is None or truncation.is_default:
        return None
    for field in truncation.asked:
        check_truncation_field(
            backend, supported, field,
            param=None if field == "max_document_tokens" else truncation.field,
        )
    return truncation


def check_instruction(backend: str, takes: bool, instruction: object) -> str | None:
    """The request's instruction if the backend takes one; ``None`` if none was given.

    Args:
        backend: how messages name what serves the request (``"backend 'preset:fast'"``).
        takes: whether the backend takes an instruction (its ``takes_instruction``).
        instruction: what the request gave.

    Raises:
        InvalidInputError: naming ``instruction``: not a non-empty string, or given to a
            backend that takes none.
    """
    if instruction is None:
        return None
    if not isinstance(instruction, str) or not instruction.strip():
        raise InvalidInputError("instruction must be a non-empty string", param="instruction")
    if not takes:
        raise InvalidInputError(
            f"instruction does not apply to {backend}: only instruction-following rerankers "
            "(Qwen3-Reranker) take one",
            param="instruction",
        )
    return instruction


def as_reranker_error(backend: str, exc: Exception) -> RerankerError:
    """``exc`` itself if it is a library error, else a :class:`BackendError` naming it."""
    if isinstance(exc, RerankerError):
        return exc
    return BackendError(f"backend {backend!r} failed: {type(exc).__name__}: {exc}")


class InProcessBackend:
    """The async entry points of a backend that computes in this process (ONNX Runtime): the
    sync ones in a worker thread, since ONNX Runtime releases the GIL while it runs."""

    def score(
        self, query: str, documents: Sequence[str], truncation: Truncation | None = None,
        instruction: str | None = None,
    ) -> np.ndarray:
        raise NotImplementedError

    def score_batch(self, items: Sequence[ScoreItem]) -> list[ItemScores]:
        raise NotImplementedError

    async def ascore(
        self, query: str, documents: Sequence[str], truncation: Truncation | None = None,
        instruction: str | None = None,
    ) -> np.ndarray:
        """:meth:`score` in a worker thread."""
        return await asyncio.to_thread(self.score, query, documents, truncation, instruction)

    async def ascore_batch(self, items: Sequence[ScoreItem]) -> list[ItemScores]:
        """:meth:`score_batch` in a worker thread."""
        return await asyncio.to_thread(self.score_batch, items)


class SingleItemBackend:
    """The batch entry point for backends that score one item per call (providers, plugins):
    the items are scored concurrently with ``ascore``, each failing alone. They take no
    instruction unless a subclass declares ``takes_instruction`` (and its ``ascore`` takes it)."""

    name: str
    truncation_fields: frozenset[str] = frozenset()
    takes_instruction: bool = False

    async def ascore(
        self, query: str, documents: Sequence[str], truncation: Truncation | None = None
    ) -> np.ndarray:
        raise NotImplementedError

    async def _ascore_item(self, item: ScoreItem) -> np.ndarray:
        instruction = check_instruction(
            f"backend {self.name!r}", self.takes_instruction, item.instruction)
        if instruction is None:
            return await self.ascore(item.query, item.documents, item.truncation)
        return await self.ascore(  # type: ignore[call-arg]  # declared by takes_instruction
            item.query, item.documents, item.truncation, instruction)

    async def ascore_batch(self, items: Sequence[ScoreItem]) -> list[ItemScores]:
        """Every item scored concurrently; a failed item gets its error instead."""
        results = await asyncio.gather(
            *(self._ascore_item(item) for item in items), return_exceptions=True,
        )
        out: list[ItemScores] = []
        for res in results:
            if isinstance(res, Exception):
                out.append(as_reranker_error(self.name, res))
            elif isinstance(res, BaseException):  # cancellation and friends
                raise res
            else:
                out.append(np.asarray(res, dtype=np.float32))
        return out

    def score_batch(self, items: Sequence[ScoreItem]) -> list[ItemScores]:
        """The sync form of :meth:`ascore_batch`; safe inside a running event loop."""
        return run_sync(lambda: self.ascore_batch(items))
