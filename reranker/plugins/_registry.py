"""The in-process registry of plugin backends: a name maps to a user object.

The registry lives in one Python process. A Ray Serve replica or a Ray Data worker is another
process that never ran :func:`register_reranker_backend`; there, plugins are named by import path
instead (see ``docs/plugins.md``).
"""

from __future__ import annotations

import inspect
import threading
from typing import Any

from reranker.errors import ConfigError, ModelNotFoundError

__all__ = [
    "register_reranker_backend",
    "unregister_reranker_backend",
    "list_reranker_backends",
    "clear_reranker_backends",
    "get_registered_backend",
    "check_plugin_object",
]

_REGISTRY: dict[str, Any] = {}
_LOCK = threading.Lock()


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise ConfigError(f"plugin name must be a string, got {type(name).__name__}")
    if not name:
        raise ConfigError("plugin name must not be empty")
    if any(ch.isspace() for ch in name):
        raise ConfigError(f"plugin name {name!r} must not contain whitespace")
    if ":" in name:
        raise ConfigError(
            f"plugin name {name!r} must not contain ':'; names with ':' are read as import "
            "paths 'package.module:attr'"
        )
    return name


def check_plugin_object(obj: object, *, label: str) -> None:
    """Raise ``ConfigError`` unless ``obj`` is an object with a callable ``score`` or a callable.

    Classes are refused: a registered plugin is already built, so register an instance.
    """
    if inspect.isclass(obj):
        raise ConfigError(
            f"{label} is the class {obj.__qualname__}; register an instance of it, or name the "
            "class by import path 'package.module:Class' to have it built with the options"
        )
    score = getattr(obj, "score", None)
    if score is not None and not callable(score):
        raise ConfigError(f"{label} has a 'score' attribute that is not callable")
    if score is None and not callable(obj):
        raise ConfigError(
            f"{label} must have a score(query, documents) method or be a callable "
            f"fn(query, documents), got {type(obj).__name__}"
        )


def register_reranker_backend(name: str, backend: object, *, replace: bool = False) -> None:
    """Make ``backend`` available as ``{"type": "plugin", "name": name}`` in this process.

    Example:
        >>> def overlap(query, documents):
        ...     words = set(query.split())
        ...     return [len(words & set(d.split())) for d in documents]
        >>> register_reranker_backend("overlap", overlap)
        >>> from reranker import Reranker
        >>> Reranker("plugin:overlap").rerank("red fox", ["a cat", "red fox"])[0].index
        1
        >>> unregister_reranker_backend("overlap")

    Args:
        name: non-empty, no whitespace, no ``':'``.
        backend: an object with ``score(query, documents)`` (sync or ``async def``) or a
            callable ``fn(query, documents)``; see ``docs/plugins.md`` for the optional
            ``scores_are_probabilities``, ``max_length`` and ``close()``.
        replace: allow replacing a plugin already registered under ``name``.

    Raises:
        ConfigError: bad name, unusable backend, or the name is taken and ``replace`` is false.
    """
    _check_name(name)
    check_plugin_object(backend, label=f"plugin {name!r}")
    with _LOCK:
        if name in _REGISTRY and not replace:
            raise ConfigError(
                f"plugin name {name!r} is already registered; pass replace=True to replace it"
            )
        _REGISTRY[name] = backend


def unregister_reranker_backend(name: str) -> None:
    """Remove a registered plugin. Backends already built from it keep working.

    Raises:
        ModelNotFoundError: no plugin has that name; the message lists the registered ones.
    """
    with _LOCK:
        if name not in _REGISTRY:
            raise ModelNotFoundError(_unknown_message(name, sorted(_REGISTRY)))
        del _REGISTRY[name]


def list_reranker_backends() -> list[str]:
    """The registered plugin names, sorted."""
    with _LOCK:
        return sorted(_REGISTRY)


def clear_reranker_backends() -> None:
    """Remove every registered plugin (for tests and notebooks)."""
    with _LOCK:
        _REGISTRY.clear()


def get_registered_backend(name: str) -> Any:
    """The object registered under ``name``.

    Raises:
        ModelNotFoundError: no plugin has that name; the message lists the registered ones.
    """
    with _LOCK:
        try:
            return _REGISTRY[name]
        except KeyError:
            known = sorted(_REGISTRY)
    raise ModelNotFoundError(_unknown_message(name, known)) from None


def _unknown_message(name: str, known: list[str]) -> str:
    listed = ", ".join(repr(n) for n in known) if known else "none"
    return (
        f"no plugin backend named {name!r} in this process (registered: {listed}). "
        "Register it with reranker.plugins.register_reranker_backend, or name it by import "
        "path 'package.module:attr' (required in Ray workers, which never ran the registration)"
    )
