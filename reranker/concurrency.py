"""The sync-over-async bridge and the gather-and-cancel helper every layer shares.

:func:`run_sync` runs a coroutine to completion from sync code, on a private event loop: here when
the thread runs none, else in a fresh daemon thread (``asyncio.run`` cannot nest in a running
loop, and waiting on the caller's own loop would deadlock). :func:`gather_or_cancel` awaits
several awaitables and, when one fails, cancels the rest before re-raising, so that no work nobody
will read goes on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

__all__ = ["gather_or_cancel", "run_sync", "start_daemon_thread"]

_T = TypeVar("_T")


def start_daemon_thread(fn: Callable[[], _T]) -> concurrent.futures.Future[_T]:
    """Run ``fn`` in a new daemon thread; its outcome lands in the returned future.

    A fresh thread per call rather than a pool: a call that overruns its timeout keeps its
    thread (Python cannot kill one), and a bounded pool, asyncio's default executor included,
    would fill with such threads and stall every later call in the process.
    """
    future: concurrent.futures.Future[_T] = concurrent.futures.Future()
    context = contextvars.copy_context()

    def target() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(context.run(fn))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=target, name="reranker-sync-bridge", daemon=True).start()
    return future


def run_sync(factory: Callable[[], Awaitable[_T]]) -> _T:
    """Run the coroutine ``factory()`` makes to completion and return its result.

    ``factory`` is called on the loop that runs the coroutine, so anything it binds to the
    running loop (clients, locks) belongs to that loop.
    """

    async def main() -> _T:
        return await factory()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    # This thread's loop is busy running our caller; waiting on it would deadlock.
    return start_daemon_thread(lambda: asyncio.run(main())).result()


async def gather_or_cancel(awaitables: Iterable[Awaitable[_T]]) -> list[_T]:
    """The results of every awaitable, in order; if one fails, the others are cancelled (and
    awaited) before its exception is raised."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
