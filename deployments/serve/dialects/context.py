"""What a dialect's routes get from the app: the service and the app's way to run a rerank."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response

from deployments.serve.fallback import FALLBACK_HEADER
from deployments.serve.service import RerankOutcome, RerankService

__all__ = ["DialectContext", "RunRerank", "fallback_meta", "usage_meta"]

Work = Callable[[], Awaitable[RerankOutcome]]
# (route template, model the client named, the work): metrics and error mapping around ``work``.
RunRerank = Callable[[str, str | None, Work], Awaitable[RerankOutcome]]


@dataclass(frozen=True)
class DialectContext:
    """Shared by every dialect router of one app.

    Args:
        service: routing, limits, fan-out and ranking.
        run: runs a rerank with the app's metrics and error mapping (``http_api.build_api``).
        debug_meta: the ``meta`` additions a request asked for with the debug header.
    """

    service: RerankService
    run: RunRerank
    debug_meta: Callable[[Request, RerankOutcome], dict[str, Any]]


def fallback_meta(response: Response, outcome: RerankOutcome) -> dict[str, Any]:
    """Make a fallback visible: the ``x-reranker-fallback`` header on ``response`` and the
    ``meta`` additions of JSON bodies (``{}`` when the requested model answered)."""
    if outcome.fallback is None:
        return {}
    response.headers[FALLBACK_HEADER] = outcome.fallback.header()
    return {"fallback": outcome.fallback.meta()}


def usage_meta(outcome: RerankOutcome) -> dict[str, Any]:
    """Cohere's ``meta`` usage fields: ``billed_units.search_units`` and, when the model
    counted them, ``tokens.input_tokens`` (the tokens scored)."""
    usage = outcome.usage
    if usage is None:
        return {}
    meta: dict[str, Any] = {"billed_units": {"search_units": usage.search_units}}
    if usage.tokens is not None:
        meta["tokens"] = {"input_tokens": usage.tokens}
    return meta
