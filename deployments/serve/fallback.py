"""Fallback chains: when a model rate-limits, fails or times out, another one answers.

An app names, per model, an ordered chain of other configured models (``fallbacks:`` in
``AppArgs``), optionally ending in :data:`FIRST_STAGE`: the candidates returned in their input
order. A fallback is taken only for server-side failures of the model that was tried, decided
from the status the error would be answered with (``deployments.serve.errors``, the one status
table): 429 (the provider or the replica queue rate-limits), 503 (a replica died and its retry
failed too, or a model could not be loaded), 504 (timeout) and any other 5xx. Client errors
(4xx: bad input, a text too long for the model, and a provider's 400/413/422 refusal of the
input) never fall back: another model would not fix the request. A provider's 401/403/404 (the
server's key or model name is wrong) does.

Only the requested model's own chain is followed (a fallback model's chain is not), and the
last model's error is what the client gets when every link fails. Nothing is silent: the
outcome carries a :class:`FallbackReport` that the HTTP layer turns into ``meta.fallback`` and
the ``x-reranker-fallback`` header, and the ingress counts every hop in a metric.

``first_stage`` results carry placeholder scores, the reciprocal of the input rank
(1, 1/2, 1/3, ...): strictly decreasing so any client that sorts by score keeps the input order,
numbers so every client (the Cohere SDK included) parses them, but not relevance.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from deployments.serve.errors import ApiError, to_api_error
from reranker.errors import ProviderStatusError
from reranker.types import Document, RerankResult

__all__ = [
    "FALLBACK_HEADER",
    "FIRST_STAGE",
    "REASONS",
    "FallbackHop",
    "FallbackReport",
    "fallback_reason",
    "first_stage_results",
    "run_chain",
]

logger = logging.getLogger("ray.serve")

FIRST_STAGE = "first_stage"
FALLBACK_HEADER = "x-reranker-fallback"
# Why a model was left; a fixed set, so it can be a metric label.
REASONS = ("rate_limited", "timeout", "unavailable", "failed")
_PROVIDER_INPUT_STATUSES = frozenset({400, 413, 422})


def fallback_reason(exc: BaseException) -> str | None:
    """Why ``exc`` moves the request to the next model, or ``None`` (a client error: fail)."""
    if _provider_refused_input(exc):
        return None
    status = to_api_error(exc).status
    if status == 429:
        return "rate_limited"
    if status == 504:
        return "timeout"
    if status == 503:
        return "unavailable"
    return "failed" if status >= 500 else None


def _provider_refused_input(exc: BaseException | None) -> bool:
    # A provider's 400/413/422 is answered 502 (the upstream failed us), but it refused what
    # the client sent, and another model would be given the same request. The error may arrive
    # wrapped (a failed chunk of several), so the cause chain is searched.
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, ProviderStatusError) and exc.status_code in _PROVIDER_INPUT_STATUSES:
            return True
        exc, seen = exc.__cause__, seen + 1
    return False


@dataclass(frozen=True)
class FallbackHop:
    """One model that was left: its name, why, and the status it would have answered."""

    model: str
    reason: str
    status: int


@dataclass(frozen=True)
class FallbackReport:
    """The models tried for a request, in order, and the one that answered."""

    requested: str
    answered_by: str
    hops: tuple[FallbackHop, ...]

    def header(self) -> str:
        """``cohere->fast (rate_limited)``; longer chains list every model and reason."""
        path = "->".join([*(h.model for h in self.hops), self.answered_by])
        return f"{path} ({', '.join(h.reason for h in self.hops)})"

    def meta(self) -> dict[str, Any]:
        """The ``meta.fallback`` object of JSON responses."""
        return {
            "requested_model": self.requested,
            "model": self.answered_by,
            "reason": self.hops[0].reason,
            "tried": [{"model": h.model, "reason": h.reason, "status": h.status}
                      for h in self.hops],
        }


def first_stage_results(
    n: int, documents: Sequence[Document] | None, *, top_n: int | None, return_documents: bool
) -> list[RerankResult]:
    """The candidates in input order with reciprocal-rank placeholder scores."""
    keep = n if top_n is None else min(top_n, n)
    attach = return_documents and documents is not None
    return [
        RerankResult(
            index=i,
            score=1.0 / (i + 1),
            document=_as_document(documents[i]) if attach else None,  # type: ignore[index]
        )
        for i in range(keep)
    ]


def _as_document(doc: Document) -> str | dict[str, Any]:
    return doc if isinstance(doc, str) else dict(doc)


async def run_chain(
    requested: str,
    chain: Sequence[str],
    attempt: Callable[[str], Awaitable[Any]],
    first_stage: Callable[[], Any],
    on_hop: Callable[[FallbackHop, str], None] | None = None,
) -> tuple[Any, FallbackReport | None]:
    """Try ``requested``, then each model of ``chain``, until one answers.

    Args:
        requested: the model the request resolved to.
        chain: its fallbacks in order (configured names, ``first_stage`` last).
        attempt: scores the request with the named model.
        first_stage: builds the input-order answer.
        on_hop: told of every hop and the model tried next (metrics).

    Returns:
        The first answer and, when it did not come from ``requested``, the report saying why.

    Raises:
        Exception: a client error as it is; when every model failed, the last failure, its
            message naming the models tried before.
    """
    candidates = [requested, *chain]
    hops: list[FallbackHop] = []
    for i, model in enumerate(candidates):
        try:
            answer = first_stage() if model == FIRST_STAGE else await attempt(model)
        except Exception as exc:
            reason = fallback_reason(exc)
            if reason is None or not chain:
                raise
            err = to_api_error(exc)
            if i == len(candidates) - 1:
                tried = ", ".join(f"{h.model} ({h.reason})" for h in hops)
                raise ApiError(
                    err.status, err.type,
                    f"model {model!r}, the last fallback after {tried}, failed too: "
                    f"{err.message}", err.param, err.retry_after_s,
                ) from exc
            hop = FallbackHop(model, reason, err.status)
            hops.append(hop)
            logger.warning("model %r %s (%s); falling back to %r", model, reason, err.status,
                           candidates[i + 1])
            if on_hop is not None:
                on_hop(hop, candidates[i + 1])
            continue
        report = FallbackReport(requested, model, tuple(hops)) if hops else None
        return answer, report
    raise AssertionError("unreachable")  # pragma: no cover
