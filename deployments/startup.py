"""Fail before Ray starts, and in one line when Ray fails: shared by ``serve`` and ``batch``.

:func:`check_models` runs in the command's own process before ``ray.init``: it checks what can
be known without loading a model or reaching the network (a local folder and its files, the
Hub cache when offline, a provider's API key), through the same ``reranker`` functions the
replicas and actors call, so a bad ``--model`` is one ``error:`` line in a second instead of a
failed deployment a minute later. :func:`root_cause` turns what Ray reports when a deployment or
an actor still fails (a traceback nested in a traceback) into the one line that explains it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from reranker.config import BackendConfig, CustomConfig, LlmConfig, PresetConfig
from reranker.errors import RerankerError

__all__ = ["StartupError", "check_models", "root_cause"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# "reranker.errors.ModelLoadError: cannot read ..." or "ValueError: ..." at a line's start,
# after any "(ServeController pid=1)" prefix Ray's log forwarding adds.
_ERROR_LINE = re.compile(
    r"^(?:\([^)]*\)\s*)?\s*((?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*(?:Error|Exception))): (\S.*)$"
)
# Wrappers Ray puts around the error that matters; their own lines explain nothing.
_RAY_WRAPPERS = {"RayTaskError", "RayActorError", "ActorDiedError", "RuntimeError",
                 "UserCodeException"}


class StartupError(RerankerError):
    """A Serve app or a batch job's actors failed to start (a model failed to load on Ray)."""


def check_models(configs: Iterable[BackendConfig]) -> None:
    """Raise the error each model would raise on Ray, where that needs no load or download.

    Local folders are checked for the model and tokenizer files; Hub models are resolved from
    the cache when ``HF_HUB_OFFLINE`` is set (online, they are left to download on Ray);
    provider models need their API key in the environment.

    Example:
        >>> check_models([parse_backend_config("./missing")])  # doctest: +SKIP
        ModelNotFoundError: local model folder './missing' does not exist ...
    """
    from reranker.backends.local import fetch_local_model
    from reranker.hub import hub_offline, is_local_model_id

    for config in configs:
        if isinstance(config, (PresetConfig, CustomConfig)):
            local = isinstance(config, CustomConfig) and is_local_model_id(config.model_id)
            if local or hub_offline():
                fetch_local_model(config)
        elif isinstance(config, LlmConfig):
            from reranker.providers.backend import build_provider_backend

            build_provider_backend(config).close()


def root_cause(error: BaseException | str) -> str:
    """The one line that explains a failure Ray reports as nested tracebacks.

    A ``reranker`` error found in the exception chain (or named in the text) gives its own
    message; otherwise the innermost ``SomeError: message`` line; otherwise the first line.
    """
    if isinstance(error, BaseException):
        for exc in _chain(error):
            if isinstance(exc, RerankerError) and str(exc).strip():
                return str(exc).strip().splitlines()[0]
        text = "\n".join(str(exc) for exc in _chain(error))
    else:
        text = error
    lines = [_ANSI.sub("", line).rstrip() for line in text.splitlines()]
    found = [m for m in map(_ERROR_LINE.match, lines) if m]
    ours = [m for m in found if m.group(1).startswith("reranker.")]
    if ours:
        return ours[-1].group(3)
    others = [m for m in found if m.group(2) not in _RAY_WRAPPERS]
    if others:
        return f"{others[-1].group(2)}: {others[-1].group(3)}"
    return next((line.strip() for line in lines if line.strip()), "unknown error")


def _chain(error: BaseException) -> list[BaseException]:
    """``error``, the causes it chains and the ``cause`` Ray's task errors carry."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [error]
    while todo:
        exc = todo.pop(0)
        if exc is None or any(exc is s for s in seen):
            continue
        seen.append(exc)
        cause = getattr(exc, "cause", None)
        todo += [cause if isinstance(cause, BaseException) else None, exc.__cause__,
                 exc.__context__]
    return seen
