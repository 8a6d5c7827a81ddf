"""The HTTP machinery shared by every provider: one retrying JSON client per backend.

Responsibilities, in one place so that each provider class stays a payload builder and a
response parser:

- one ``httpx.AsyncClient`` per event loop (created lazily; an ``AsyncClient`` and its pooled
  connections belong to the loop that opened them), with an explicit ``httpx.Timeout`` and a
  hard per-attempt deadline so that a slow-drip server cannot stretch an attempt;
- at most ``max_concurrency`` requests in flight per loop;
- bounded retries with full-jitter exponential backoff on 5xx, timeouts and connection errors,
  and on 429 honouring ``Retry-After`` (seconds or an HTTP date, capped by ``backoff_max_s``);
- mapping failures onto :mod:`reranker.errors`: ``ProviderTimeoutError``,
  ``ProviderRateLimitError``, ``ProviderStatusError`` (with the provider's own message,
  truncated) and ``ProviderResponseError`` for a 2xx body that is not JSON;
- keeping the API key out of reprs, log lines and error messages: it lives only in
  :class:`ApiKey` and is put on the wire by an ``httpx.Auth`` flow, never into client headers.

A call therefore ends within about ``(max_retries + 1) * timeout_s`` plus the sleeps between
attempts, each at most ``backoff_max_s``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import httpx

from reranker.errors import (
    ProviderError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderStatusError,
    ProviderTimeoutError,
)

__all__ = ["ApiKey", "RetryPolicy", "ProviderHttpClient", "parse_retry_after", "backoff_delay"]

logger = logging.getLogger("reranker.providers")

_MESSAGE_LIMIT = 300
_RETRY_STATUSES = frozenset({500, 502, 503, 504})


class ApiKey:
    """An API key that never shows itself: ``repr``/``str`` print a mask, not the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The key itself, for the Authorization header only."""
        return self._value

    def scrub(self, text: str) -> str:
        """``text`` with every occurrence of the key replaced by a mask."""
        return text.replace(self._value, "***") if self._value else text

    def __repr__(self) -> str:
        return "ApiKey('***')"

    __str__ = __repr__


class _BearerAuth(httpx.Auth):
    def __init__(self, key: ApiKey) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._key.reveal()}"
        yield request

    def __repr__(self) -> str:
        return "_BearerAuth(***)"


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


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or HTTP date), or ``None``.

    Example:
        >>> parse_retry_after("2")
        2.0
        >>> parse_retry_after("soon") is None
        True
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _error_message(response: httpx.Response, key: ApiKey) -> str:
    text = response.text
    message: Any = text
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        for field in ("message", "detail", "error"):
            value = body.get(field)
            if isinstance(value, dict):
                value = value.get("message", value)
            if value:
                message = value
                break
    message = " ".join(key.scrub(str(message)).split())
    if len(message) > _MESSAGE_LIMIT:
        message = message[:_MESSAGE_LIMIT] + "..."
    return message or "(empty body)"


class _LoopState:
    def __init__(self, client: httpx.AsyncClient, max_concurrency: int) -> None:
        self.client = client
        self.semaphore = asyncio.Semaphore(max_concurrency)


class ProviderHttpClient:
    """POSTs JSON to one provider with retries; usable from any number of event loops.

    Args:
        provider: provider name for messages (``"cohere"``).
        base_url: scheme, host and optional path prefix (``"https://api.cohere.com"``).
        api_key: the key, wrapped so that it cannot leak through ``repr``.
        policy: timeouts and retries.
        max_concurrency: requests in flight at once per event loop.
        transport: an ``httpx`` transport to use instead of the network (tests).
        rng: source of jitter (tests pass a seeded one).
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        api_key: ApiKey,
        policy: RetryPolicy,
        *,
        max_concurrency: int = 4,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.policy = policy
        self.max_concurrency = max_concurrency
        self._key = api_key
        self._auth = _BearerAuth(api_key)
        self._transport = transport
        self._rng = rng or random.Random()
        self._states: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"ProviderHttpClient(provider={self.provider!r}, base_url={self.base_url!r})"

    @property
    def closed(self) -> bool:
        return self._closed

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closed:
                raise RuntimeError("client is closed")
            # Loops that asyncio.run already closed cannot be used again; forget their clients.
            for old in [lp for lp in self._states if lp.is_closed()]:
                del self._states[old]
            state = self._states.get(loop)
            if state is None:
                state = self._states[loop] = _LoopState(self._new_client(), self.max_concurrency)
            return state

    def _new_client(self) -> httpx.AsyncClient:
        limits = httpx.Limits(
            max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
        )
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.policy.timeout_s),
            limits=limits,
            auth=self._auth,
            transport=self._transport,
            headers={"Accept": "application/json", "User-Agent": "reranker"},
            follow_redirects=False,
            trust_env=self._transport is None,
        )

    async def post_json(self, path: str, payload: dict[str, Any]) -> Any:
        """POST ``payload`` to ``base_url + path`` and return the decoded JSON body.

        Raises:
            ProviderTimeoutError: the last attempt timed out.
            ProviderError: the last attempt could not connect (refused, reset, DNS).
            ProviderRateLimitError: still 429 after ``max_retries`` retries.
            ProviderStatusError: a 4xx (not retried) or a 5xx after the retries.
            ProviderResponseError: a 2xx whose body is not JSON.
        """
        state = self._state()
        async with state.semaphore:
            return await self._post_with_retries(state.client, self.base_url + path, payload)

    async def _post_with_retries(
        self, client: httpx.AsyncClient, url: str, payload: dict[str, Any]
    ) -> Any:
        policy = self.policy
        attempts = policy.max_retries + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = await asyncio.wait_for(
                    client.post(url, json=payload), timeout=policy.timeout_s
                )
            except (asyncio.TimeoutError, httpx.TimeoutException) as exc:
                if last:
                    raise ProviderTimeoutError(
                        f"{self.provider} did not answer within {policy.timeout_s:g}s "
                        f"({attempts} attempt(s))",
                        provider=self.provider,
                    ) from exc
                await self._sleep(attempt, "timeout", None)
                continue
            except httpx.TransportError as exc:
                if last:
                    raise ProviderError(
                        f"{self.provider} could not be reached after {attempts} attempt(s): "
                        f"{type(exc).__name__}",
                        provider=self.provider,
                    ) from exc
                await self._sleep(attempt, type(exc).__name__, None)
                continue
            if response.is_success:
                return self._decode(response)
            status = response.status_code
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            retryable = status == 429 or status in _RETRY_STATUSES
            if retryable and not last:
                await self._sleep(attempt, f"HTTP {status}", retry_after)
                continue
            message = _error_message(response, self._key)
            tries = f" after {attempts} attempt(s)" if retryable else ""
            if status == 429:
                raise ProviderRateLimitError(
                    f"{self.provider} rate limit (HTTP 429){tries}: {message}",
                    provider=self.provider,
                    retry_after_s=retry_after,
                )
            raise ProviderStatusError(
                f"{self.provider} answered HTTP {status}{tries}: {message}",
                provider=self.provider,
                status_code=status,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    async def _sleep(self, attempt: int, reason: str, retry_after: float | None) -> None:
        if retry_after is not None:
            delay = min(retry_after, self.policy.backoff_max_s)
        else:
            delay = backoff_delay(attempt, self.policy, self._rng)
        logger.info(
            "%s rerank attempt %d failed (%s); retrying in %.2fs",
            self.provider, attempt + 1, reason, delay,
        )
        await asyncio.sleep(delay)

    def _decode(self, response: httpx.Response) -> Any:
        try:
            return json.loads(response.content)
        except ValueError as exc:
            raise ProviderResponseError(
                f"{self.provider} answered HTTP {response.status_code} with a body that is not "
                f"valid JSON ({len(response.content)} bytes)",
                provider=self.provider,
            ) from exc

    async def aclose_current_loop(self) -> None:
        """Close the client of the running loop (the others stay open)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._states.pop(loop, None)
        if state is not None:
            await state.client.aclose()

    async def aclose(self) -> None:
        """Close this loop's client (awaited) and every other one (see :meth:`close`)."""
        await self.aclose_current_loop()
        self.close()

    def close(self) -> None:
        """Close every client; safe to call twice and from any thread or loop."""
        with self._lock:
            self._closed = True
            states, self._states = self._states, {}
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, state in states.items():
            _close_on_loop(loop, state.client, running)


_PENDING_CLOSES: set[asyncio.Task[None]] = set()


def _close_on_loop(
    loop: asyncio.AbstractEventLoop,
    client: httpx.AsyncClient,
    running: asyncio.AbstractEventLoop | None,
) -> None:
    # A client must be closed on its own loop; a closed loop already dropped its sockets.
    if loop.is_closed():
        return
    if loop is running:
        task = loop.create_task(client.aclose())
        _PENDING_CLOSES.add(task)
        task.add_done_callback(_PENDING_CLOSES.discard)
    elif loop.is_running():
        future = asyncio.run_coroutine_threadsafe(client.aclose(), loop)
        try:
            future.result(timeout=5.0)
        except Exception:  # best effort: the loop may be shutting down
            logger.debug("could not close a provider client on its loop", exc_info=True)
    elif running is None:
        try:
            loop.run_until_complete(client.aclose())
        except Exception:
            logger.debug("could not close a provider client", exc_info=True)
