"""``PluginBackend``: a user's scorer behind the ``RerankerBackend`` contract.

The adapter is the only code that calls a plugin. It bridges sync and async (a sync plugin runs
in a thread under ``ascore``; an async plugin runs on an event loop under ``score``, through
``reranker.concurrency.run_sync``), bounds each
call by ``timeout_s``, runs sync plugins in a bounded thread pool of their own (never the default
executor, which model loads use), reports itself unhealthy (:meth:`PluginBackend.check_health`)
once every thread of that pool holds a call that overran, wraps plugin exceptions in
:class:`~reranker.errors.BackendError` and validates the output before it becomes a float32 array.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from reranker.backends.base import SingleItemBackend, check_instruction, check_truncation
from reranker.concurrency import run_sync
from reranker.errors import BackendError, BackendTimeoutError, ConfigError, RerankerError
from reranker.scoring import check_scores
from reranker.types import Truncation

__all__ = ["PluginBackend"]

_T = TypeVar("_T")
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Distinct classes on Python 3.10, one class from 3.11 on.
_TIMEOUTS = (TimeoutError, asyncio.TimeoutError, concurrent.futures.TimeoutError)


def _is_async_callable(fn: object) -> bool:
    # The second test catches instances of classes with ``async def __call__``.
    return inspect.iscoroutinefunction(fn) or (
        callable(fn) and inspect.iscoroutinefunction(type(fn).__call__)
    )


async def _await(awaitable: Awaitable[_T]) -> _T:
    return await awaitable


class PluginBackend(SingleItemBackend):
    """Adapts a plugin (an object with ``score`` or a callable) to the backend contract.

    A plugin cuts documents itself: a request's non-default truncation is refused (it applies
    no ``truncation_fields``), and so is an ``instruction`` (it takes none). Many items at once
    are scored concurrently, each failing alone.

    Args:
        plugin: the user object; its optional ``scores_are_probabilities`` (default ``False``)
            and ``max_length`` (default ``None``) attributes are read once, here.
        name: the plugin's name or import path; the backend is called ``"plugin:NAME"``.
        timeout_s: bound on one call. A sync plugin that overruns keeps running in its thread
            (threads cannot be killed); its result is dropped.
        max_threads: threads of the pool sync plugins run in; a call finding them all busy
            waits (within its timeout).
        owns_plugin: call the plugin's ``close()`` from :meth:`close`. True when the plugin was
            built from an import path for this backend, false for registered objects, which
            belong to whoever registered them.

    Raises:
        ConfigError: the plugin's declared attributes have the wrong types.
    """

    def __init__(
        self,
        plugin: object,
        *,
        name: str,
        timeout_s: float | None = None,
        owns_plugin: bool = False,
        max_threads: int = 8,
    ) -> None:
        score = getattr(plugin, "score", None)
        fn = score if score is not None else plugin
        if not callable(fn):
            raise ConfigError(f"plugin {name!r} has no score(query, documents) and is not callable")
        probabilities = getattr(plugin, "scores_are_probabilities", False)
        if not isinstance(probabilities, bool):
            raise ConfigError(
                f"plugin {name!r}: scores_are_probabilities must be a bool, "
                f"got {type(probabilities).__name__}"
            )
        max_length = getattr(plugin, "max_length", None)
        valid_length = isinstance(max_length, (int, np.integer)) and not isinstance(
            max_length, bool
        ) and max_length > 0
        if max_length is not None and not valid_length:
            raise ConfigError(
                f"plugin {name!r}: max_length must be a positive int or None, got {max_length!r}"
            )
        self.name = f"plugin:{name}"
        self.max_length: int | None = None if max_length is None else int(max_length)
        self.scores_are_probabilities: bool = probabilities
        self.plugin = plugin
        self._fn: Callable[[str, list[str]], Any] = fn
        self._is_async = _is_async_callable(fn)
        self._timeout_s = timeout_s
        self._owns_plugin = owns_plugin
        self._closed = False
        self.max_threads = max_threads
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_threads, thread_name_prefix=f"plugin-{name}"[:40])
        self._overran = 0  # calls past their timeout that still hold a pool thread
        self._overran_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PluginBackend({self.name!r})"

    # -- sync entry point -------------------------------------------------------------------

    def score(
        self, query: str, documents: Sequence[str], truncation: Truncation | None = None,
        instruction: str | None = None,
    ) -> np.ndarray:
        """Call the plugin and return one validated float32 score per document."""
        check_instruction(f"backend {self.name!r}", self.takes_instruction, instruction)
        check_truncation(f"backend {self.name!r}", self.truncation_fields, truncation)
        docs = list(documents)
        if self._is_async:
            result = self._score_async_plugin_sync(query, docs)
        elif self._timeout_s is None:
            result = self._call_sync(query, docs)
        else:
            future = self._submit(query, docs)
            try:
                result = future.result(timeout=self._timeout_s)
            except _TIMEOUTS as exc:
                self._overrun(future)
                raise self._timeout_error() from exc
        if inspect.isawaitable(result):
            result = self._score_awaitable_sync(result)
        return self._validate(result, len(docs))

    def _call_sync(self, query: str, docs: list[str]) -> Any:
        try:
            return self._fn(query, docs)
        except RerankerError:
            raise
        except Exception as exc:
            raise self._failure(exc) from exc

    def _score_async_plugin_sync(self, query: str, docs: list[str]) -> Any:
        return self._run_coroutine_sync(lambda: self._acall(query, docs))

    def _score_awaitable_sync(self, awaitable: Awaitable[Any]) -> Any:
        return self._run_coroutine_sync(lambda: self._guard(_await(awaitable)))

    def _run_coroutine_sync(self, make: Callable[[], Awaitable[Any]]) -> Any:
        async def bounded() -> Any:
            return await asyncio.wait_for(make(), self._timeout_s)

        try:
            return run_sync(bounded)
        except _TIMEOUTS as exc:
            raise self._timeout_error() from exc

    # -- async entry point ------------------------------------------------------------------

    async def ascore(
        self, query: str, documents: Sequence[str], truncation: Truncation | None = None,
        instruction: str | None = None,
    ) -> np.ndarray:
        """The same as :meth:`score`; a sync plugin runs in a worker thread."""
        check_instruction(f"backend {self.name!r}", self.takes_instruction, instruction)
        check_truncation(f"backend {self.name!r}", self.truncation_fields, truncation)
        docs = list(documents)
        if not self._is_async:
            return await self._ascore_in_pool(query, docs)
        try:
            result = await asyncio.wait_for(self._acall(query, docs), self._timeout_s)
        except _TIMEOUTS as exc:
            raise self._timeout_error() from exc
        return self._validate(result, len(docs))

    async def _ascore_in_pool(self, query: str, docs: list[str]) -> np.ndarray:
        future = self._submit(query, docs)
        try:
            # shield: a timeout must not cancel the wrapped future's bookkeeping; the thread
            # runs on regardless (Python cannot stop it).
            result = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)),
                                            self._timeout_s)
        except _TIMEOUTS as exc:
            self._overrun(future)
            raise self._timeout_error() from exc
        if inspect.isawaitable(result):
            try:
                result = await asyncio.wait_for(self._guard(_await(result)), self._timeout_s)
            except _TIMEOUTS as exc:
                raise self._timeout_error() from exc
        return self._validate(result, len(docs))

    def _submit(self, query: str, docs: list[str]) -> concurrent.futures.Future[Any]:
        return self._pool.submit(self._call_sync, query, docs)

    def _overrun(self, future: concurrent.futures.Future[Any]) -> None:
        if future.cancel():
            return  # it was still waiting for a thread: it never runs
        with self._overran_lock:
            self._overran += 1

        def done(_: concurrent.futures.Future[Any]) -> None:
            with self._overran_lock:
                self._overran -= 1

        future.add_done_callback(done)

    @property
    def overran_calls(self) -> int:
        """Calls past their timeout still holding a thread of the pool."""
        return self._overran

    def check_health(self) -> None:
        """Raise :class:`BackendError` when every pool thread holds a call that overran: no
        sync call can run any more until one of them returns."""
        if self._overran >= self.max_threads:
            raise BackendError(
                f"plugin {self.name!r} is stuck: all {self.max_threads} threads (max_threads) "
                f"hold calls that overran timeout_s={self._timeout_s}"
            )

    async def _acall(self, query: str, docs: list[str]) -> Any:
        # Plugin errors become BackendError here, inside wait_for, so that a TimeoutError raised
        # by the plugin itself is never mistaken for our own timeout.
        if self._is_async:
            return await self._guard(self._call_sync(query, docs))
        # Its own pool, not to_thread: a hung call must not hold a default-executor thread.
        result = await asyncio.wrap_future(self._submit(query, docs))
        if inspect.isawaitable(result):
            result = await self._guard(_await(result))
        return result

    async def _guard(self, awaitable: Awaitable[Any]) -> Any:
        try:
            return await awaitable
        except RerankerError:
            raise
        except Exception as exc:
            raise self._failure(exc) from exc

    # -- shared -----------------------------------------------------------------------------

    def _failure(self, exc: Exception) -> BackendError:
        return BackendError(f"plugin {self.name!r} raised {type(exc).__name__}: {exc}")

    def _timeout_error(self) -> BackendTimeoutError:
        return BackendTimeoutError(
            f"plugin {self.name!r} did not answer within {self._timeout_s} s (timeout_s)"
        )

    def _validate(self, result: Any, expected: int) -> np.ndarray:
        source = f"plugin {self.name!r}"
        if isinstance(result, (str, bytes)) or _holds_text(result):
            raise BackendError(f"{source} returned non-numeric scores (text)")
        scores = check_scores(result, expected, source=source)
        if scores.size and float(np.abs(scores).max()) > _FLOAT32_MAX:
            raise BackendError(f"{source} returned a score outside the float32 range")
        if self.scores_are_probabilities and scores.size and (
            scores.min() < 0.0 or scores.max() > 1.0
        ):
            raise BackendError(
                f"{source} declares scores_are_probabilities but returned scores outside [0, 1]"
            )
        return scores.astype(np.float32)

    def close(self) -> None:
        """Call the plugin's ``close()`` if this backend built it. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        close = getattr(self.plugin, "close", None) if self._owns_plugin else None
        if callable(close):
            close()


def _holds_text(result: Any) -> bool:
    # check_scores would quietly parse "1.5" as a number; a plugin returning text is a bug.
    if isinstance(result, np.ndarray):
        if result.dtype.kind in "USV":
            return True
        return result.dtype.kind == "O" and any(isinstance(x, (str, bytes)) for x in result.flat)
    if isinstance(result, (list, tuple)):
        return any(isinstance(x, (str, bytes)) for x in result)
    return False
