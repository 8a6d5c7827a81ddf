"""Scoring the requests of one dynamic batch together.

For a local ONNX backend the (query, document) pairs of every request in the batch are tokenized
per request (each with its own query), concatenated and run through the model in one call, so
the model's length grouping and token budget apply across requests. Window scores are folded back
to one raw score per document (max over a document's windows when chunking), exactly as
``LocalCrossEncoderBackend.score`` does for a single request.

Any other backend (provider, plugin) is called once per request, concurrently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reranker.backends import RerankerBackend
from reranker.errors import BackendError, InvalidInputError, RerankerError
from reranker.tokenization import EncodedPairs
from reranker.types import Truncation

__all__ = ["ScoreItem", "is_local_onnx", "score_items"]


@dataclass(frozen=True)
class ScoreItem:
    """One request's work in a batch."""

    query: str
    documents: list[str]
    truncation: Truncation | None = None


def is_local_onnx(backend: object) -> bool:
    """Whether the backend exposes the pair encoder and ONNX runner this module merges across."""
    model = getattr(backend, "model", None)
    return callable(getattr(backend, "encode", None)) and callable(getattr(model, "run", None))


def _merged_onnx_scores(backend: Any, items: Sequence[ScoreItem]) -> list[np.ndarray]:
    ids: list[list[int]] = []
    type_ids: list[list[int]] = []
    encodings: list[EncodedPairs] = []
    for item in items:
        encoded = backend.encode(item.query, item.documents, item.truncation)
        ids.extend(encoded.ids)
        type_ids.extend(encoded.type_ids)
        encodings.append(encoded)
    rows = backend.model.run(ids, type_ids)
    out: list[np.ndarray] = []
    start = 0
    for item, encoded in zip(items, encodings, strict=True):
        part = rows[start : start + len(encoded.owner)]
        start += len(encoded.owner)
        out.append(encoded.per_document(part, len(item.documents)))
    return out


async def score_items(
    backend: RerankerBackend, items: Sequence[ScoreItem]
) -> list[np.ndarray | RerankerError]:
    """Raw scores for each item, in order; a failed item gets its error instead.

    A merged ONNX run fails or succeeds for the whole batch; separate calls fail separately,
    and so does an item whose documents do not fit when it asked for them not to be cut.
    Unexpected exceptions become :class:`BackendError` naming the backend and the exception type.
    """
    if is_local_onnx(backend):
        return await asyncio.to_thread(_local_scores, backend, items)
    results = await asyncio.gather(
        *(_score_one(backend, item) for item in items),
        return_exceptions=True,
    )
    out: list[np.ndarray | RerankerError] = []
    for res in results:
        if isinstance(res, Exception):
            out.append(_as_reranker_error(backend, res))
        elif isinstance(res, BaseException):  # cancellation and friends
            raise res
        else:
            out.append(np.asarray(res, dtype=np.float32))
    return out


def _local_scores(backend: Any, items: Sequence[ScoreItem]) -> list[np.ndarray | RerankerError]:
    try:
        return list(_merged_onnx_scores(backend, items))
    except InvalidInputError:
        pass  # one item's input: score the items alone so only that one fails
    except Exception as exc:
        return [_as_reranker_error(backend, exc)] * len(items)
    out: list[np.ndarray | RerankerError] = []
    for item in items:
        try:
            out.append(_merged_onnx_scores(backend, [item])[0])
        except Exception as exc:
            out.append(_as_reranker_error(backend, exc))
    return out


async def _score_one(backend: RerankerBackend, item: ScoreItem) -> np.ndarray:
    if item.truncation is None or item.truncation.is_default:
        return await backend.ascore(item.query, item.documents)
    if not getattr(backend, "supports_truncation", False):
        raise InvalidInputError(
            f"backend {backend.name!r} cuts documents itself; per-request truncation settings "
            f"do not apply to it",
            param=item.truncation.field,
        )
    # Backends declaring supports_truncation take it as a third argument (provider, local).
    result: np.ndarray = await backend.ascore(  # type: ignore[call-arg]
        item.query, item.documents, item.truncation)
    return result


def _as_reranker_error(backend: object, exc: Exception) -> RerankerError:
    if isinstance(exc, RerankerError):
        return exc
    name = getattr(backend, "name", type(backend).__name__)
    return BackendError(f"backend {name!r} failed: {type(exc).__name__}: {exc}")
