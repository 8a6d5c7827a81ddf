"""One provider's rerank calls through liter-llm, with the guarantees this project gives.

liter-llm (``reranker.providers.catalog``) speaks every provider's wire format; this module adds
what a call must also be, in one place (each checked against a loopback stand-in, see
``docs/providers.md``, "What liter-llm gives, and what reranker adds"):

- **bounded in time**: liter-llm takes whole seconds, so it gets ``ceil(timeout_s)`` and every
  attempt also runs under ``asyncio.wait_for(timeout_s)``;
- **bounded retries**: liter-llm is told ``max_retries=0`` and this loop retries 429, 500, 502,
  503, 504, timeouts and connection errors up to ``max_retries`` times, with full-jitter
  exponential backoff, or the provider's ``Retry-After`` (liter-llm parses seconds and HTTP
  dates) capped by ``backoff_max_s``; the error passed on carries it bounded by
  :func:`reranker.retry_after.bound_retry_after`;
- **a byte cap on the answer**: liter-llm's ``max_response_bytes`` refuses a body by its
  ``Content-Length`` or stops reading once the cap is passed, before it is held whole;
- **no key in a log line, an error or a repr**: the key lives in :class:`ApiKey`, is handed to
  liter-llm once, and every provider message is scrubbed of it (liter-llm redacts it too);
- **our errors**: ``ProviderRateLimitError``, ``ProviderTimeoutError``, ``ProviderStatusError``
  (the provider's HTTP status), ``ProviderResponseError`` (a 2xx body we cannot use, or one over
  the cap), ``ProviderError`` (unreachable).

A call therefore ends within about ``(max_retries + 1) * timeout_s`` plus the sleeps between
attempts, each at most ``backoff_max_s``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reranker.errors import (
    ProviderError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderStatusError,
    ProviderTimeoutError,
)
from reranker.providers.catalog import ProviderInfo, load_liter_llm
from reranker.retry_after import bound_retry_after, parse_retry_after

__all__ = [
    "ApiKey",
    "ProviderAnswer",
    "ProviderClient",
    "RetryPolicy",
    "backoff_delay",
    "parse_retry_after",
]

logger = logging.getLogger("reranker.providers")

_MESSAGE_LIMIT = 300
_MESSAGE_FIELD = re.compile(r'"(?:message|detail|error)"\s*:\s*"((?:[^"\\]|\\.)*)')
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024


class ApiKey:
    """An API key that never shows itself: ``repr``/``str`` print a mask, not the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The key itself, handed to liter-llm only."""
        return self._value

    def scrub(self, text: str) -> str:
        """``text`` with every occurrence of the key replaced by a mask."""
        return text.replace(self._value, "***") if self._value else text

    def __repr__(self) -> str:
        return "ApiKey('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class RetryPolicy:
    """How long one attempt may take and how failed attempts are retried."""

    timeout_s: float = 30.0
    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 20.0


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(max, base * 2**attempt)]."""
    ceiling = min(policy.backoff_max_s, policy.backoff_base_s * (2.0 ** min(attempt, 30)))
    return rng.uniform(0.0, ceiling)


@dataclass(frozen=True)
class ProviderAnswer:
    """One successful rerank call: ``(index, relevance_score)`` pairs and the provider's
    ``meta`` object where it sent one (Cohere's ``billed_units``)."""

    results: list[tuple[int, float]]
    meta: dict[str, Any] | None


class _Failure(Exception):
    """One failed attempt: the error to raise if it is the last, and whether to retry."""

    def __init__(self, error: ProviderError, retry: bool, wait_s: float | None) -> None:
        super().__init__(str(error))
        self.error, self.retry, self.wait_s = error, retry, wait_s


class ProviderClient:
    """Reranks through one liter-llm client; usable from any number of event loops.

    Args:
        info: the provider (``reranker.providers.catalog.provider_info("cohere")``).
        base_url: where requests go; ``None``: liter-llm's (or the catalog's) default.
        api_key: the key, wrapped so that it cannot leak through ``repr``.
        policy: timeouts and retries.
        max_concurrency: requests in flight at once per event loop.
        max_response_bytes: the largest answer body read; a larger one is refused unread.
        rng: source of jitter (tests pass a seeded one).
    """

    def __init__(
        self,
        info: ProviderInfo,
        base_url: str | None,
        api_key: ApiKey,
        policy: RetryPolicy,
        *,
        max_concurrency: int = 4,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        rng: random.Random | None = None,
    ) -> None:
        self.info = info
        self.provider = info.name
        self.base_url = base_url if base_url is not None else info.default_base_url
        self.policy = policy
        self.max_concurrency = max_concurrency
        self.max_response_bytes = max_response_bytes
        self._key = api_key
        self._rng = rng or random.Random()
        self._lib = load_liter_llm()
        whole_s = max(1, math.ceil(policy.timeout_s))
        options = self._lib.ClientOptions(
            api_key=api_key.reveal(),
            base_url=self.base_url,
            timeout_secs=whole_s,
            connect_timeout_secs=whole_s,
            max_retries=0,
            max_response_bytes=max_response_bytes,
            model_hint=info.name,
        )
        try:
            self._client: Any = self._lib.create_client_with_options(options)
        except self._lib.LiterLlmError as exc:
            raise ProviderError(
                f"{self.provider}: liter-llm refused the client settings: "
                f"{self._message(exc)}", provider=self.provider,
            ) from None
        del options
        self._semaphores: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"ProviderClient(provider={self.provider!r}, base_url={self.base_url!r})"

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Drop the liter-llm client; safe to call twice."""
        with self._lock:
            self._closed = True
            self._semaphores.clear()
            self._client = None

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closed:
                raise RuntimeError("client is closed")
            for old in [lp for lp in self._semaphores if lp.is_closed()]:
                del self._semaphores[old]
            sem = self._semaphores.get(loop)
            if sem is None:
                sem = self._semaphores[loop] = asyncio.Semaphore(self.max_concurrency)
            return sem

    async def rerank(
        self, model: str, query: str, documents: Sequence[str],
        extra_body: dict[str, Any] | None = None,
    ) -> ProviderAnswer:
        """Score every document of one request (``top_n`` = all of them).

        Raises:
            ProviderTimeoutError: the last attempt timed out.
            ProviderError: the last attempt could not connect (refused, reset, DNS).
            ProviderRateLimitError: still 429 after ``max_retries`` retries.
            ProviderStatusError: a 4xx (not retried) or a 5xx after the retries.
            ProviderResponseError: a 2xx body that is not the provider's shape, or one over
                ``max_response_bytes``.
        """
        request = self._lib.RerankRequest(
            model=f"{self.provider}/{model}", query=query, documents=list(documents),
            top_n=len(documents), extra_body=extra_body or None,
        )
        async with self._semaphore():
            return await self._with_retries(request)

    async def _with_retries(self, request: Any) -> ProviderAnswer:
        attempts = self.policy.max_retries + 1
        for attempt in range(attempts):
            try:
                return await self._attempt(request, attempts)
            except _Failure as failure:
                if not failure.retry or attempt == attempts - 1:
                    raise failure.error from None
                await self._sleep(attempt, failure)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, request: Any, attempts: int) -> ProviderAnswer:
        lib, name, client = self._lib, self.provider, self._client
        if client is None:  # closed from another thread while this call waited its turn
            raise _Failure(ProviderError(f"{name} client is closed", provider=name), False, None)
        try:
            response = await asyncio.wait_for(
                lib.rerank(client, request), timeout=self.policy.timeout_s)
        except asyncio.TimeoutError:
            raise _Failure(self._timeout(attempts), True, None) from None
        except lib.LiterLlmError as exc:
            raise self._failure(exc, attempts) from None
        meta: dict[str, Any] | None = None
        if response.meta:
            try:
                parsed = json.loads(response.meta)
            except ValueError:
                parsed = None
            meta = parsed if isinstance(parsed, dict) else None
        try:
            results = [(r.index, r.relevance_score) for r in response.results]
        except (TypeError, ValueError, AttributeError) as exc:  # pragma: no cover - typed
            raise ProviderResponseError(f"{name} answered unusable results",
                                        provider=name) from exc
        return ProviderAnswer(results, meta)

    def _timeout(self, attempts: int) -> ProviderTimeoutError:
        return ProviderTimeoutError(
            f"{self.provider} did not answer within {self.policy.timeout_s:g}s "
            f"({attempts} attempt(s))", provider=self.provider)

    def _failure(self, exc: BaseException, attempts: int) -> _Failure:
        lib, name = self._lib, self.provider
        info = lib.liter_llm_error_info(exc)
        status = int(info.status_code or 0)
        wait = bound_retry_after(info.retry_after / 1000.0) if info.retry_after else None
        message = self._message(exc)
        tries = f" after {attempts} attempt(s)"
        if isinstance(exc, lib.LiterLlmTimeoutError):
            return _Failure(self._timeout(attempts), True, None)
        if isinstance(exc, lib.NetworkError):
            return _Failure(ProviderError(
                f"{name} could not be reached{tries}: {message}", provider=name), True, None)
        if isinstance(exc, lib.StreamingError) and "exceeds configured limit" in message:
            return _Failure(ProviderResponseError(
                f"{name} answered a body over the {self.max_response_bytes}-byte limit "
                "(max_response_bytes); refused before reading it whole", provider=name),
                False, None)
        if isinstance(exc, lib.StreamingError):
            return _Failure(ProviderError(
                f"{name} answer broke off{tries}: {message}", provider=name), True, None)
        if isinstance(exc, lib.SerializationError):
            return _Failure(ProviderResponseError(
                f"{name} answered a body that is not valid JSON of its rerank shape "
                f"({message})", provider=name), False, None)
        if status == 429:
            return _Failure(ProviderRateLimitError(
                f"{name} rate limit (HTTP 429){tries}: {message}", provider=name,
                retry_after_s=wait), True, wait)
        if status >= 300:
            # liter-llm follows no redirect (nor did our own client): a 3xx is an error status,
            # so a key is never replayed to where a Location points.
            retry = status in _RETRY_STATUSES
            return _Failure(ProviderStatusError(
                f"{name} answered HTTP {status}{tries if retry else ''}: {message}",
                provider=name, status_code=status, retry_after_s=wait), retry, wait)
        return _Failure(ProviderError(f"{name} call failed: {message}", provider=name),
                        False, None)

    def _message(self, exc: BaseException) -> str:
        text = str(getattr(exc, "message", None) or (exc.args[0] if exc.args else exc))
        # liter-llm's message is "<kind>: <provider body>"; the body is JSON where the provider
        # sent JSON, possibly shortened by liter-llm (then the field is taken as far as it goes).
        start = text.find("{")
        body: Any = None
        if start >= 0:
            try:
                body = json.loads(text[start:])
            except ValueError:
                body = None
        if isinstance(body, dict):
            for key in ("message", "detail", "error"):
                value = body.get(key)
                if isinstance(value, dict):
                    value = value.get("message", value)
                if value:
                    text = str(value)
                    break
        elif start >= 0:
            found = _MESSAGE_FIELD.search(text, start)
            if found:
                text = found.group(1)
        text = " ".join(self._key.scrub(text).split())
        if len(text) > _MESSAGE_LIMIT:
            text = text[:_MESSAGE_LIMIT] + "..."
        return text or "(empty body)"

    async def _sleep(self, attempt: int, failure: _Failure) -> None:
        if failure.wait_s is not None:
            delay = min(failure.wait_s, self.policy.backoff_max_s)
        else:
            delay = backoff_delay(attempt, self.policy, self._rng)
        logger.info(
            "%s rerank attempt %d failed (%s); retrying in %.2fs",
            self.provider, attempt + 1, type(failure.error).__name__, delay,
        )
        await asyncio.sleep(delay)
