"""Resolving a :class:`~reranker.config.PluginConfig` to a built :class:`PluginBackend`.

``config.name`` is either a registered name (no ``':'``) or an import path
``package.module:attr`` (``attr`` may be dotted: ``mod:Outer.make``). What the import path names
decides what is done with it, in this order:

1. a class: instantiated as ``cls(**config.options)``;
2. an object with a ``score`` method: used as is (``options`` must be empty);
3. any other callable with non-empty ``options``: a factory, called as ``fn(**options)``; what it
   returns must have ``score`` or be callable;
4. any other callable with no ``options``: the scorer itself, called as ``fn(query, documents)``.

A factory taking no arguments therefore cannot be named directly: make it a class, or give it an
option. Registered names take no ``options`` (the object is already built).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from reranker.config import PluginConfig
from reranker.errors import ConfigError, ModelLoadError, ModelNotFoundError, RerankerError
from reranker.plugins._adapter import PluginBackend
from reranker.plugins._registry import check_plugin_object, get_registered_backend

__all__ = ["load_plugin_backend", "import_plugin_object"]

_RAY_HINT = (
    "If this runs in a Ray Serve replica or a Ray Data worker, the module must be importable "
    "there too: ship it with runtime_env={'py_modules': [...]} or runtime_env={'working_dir': "
    "...}, or install it in the workers' image"
)


def load_plugin_backend(config: PluginConfig) -> PluginBackend:
    """Build the backend a plugin config names (see the module docstring for the rules).

    Example:
        >>> from reranker.config import PluginConfig
        >>> cfg = PluginConfig(name="my_pkg.rerankers:KeywordScorer", options={"boost": 2.0})
        >>> backend = load_plugin_backend(cfg)                                 # doctest: +SKIP

    Raises:
        ModelNotFoundError: unknown registered name (the message lists the registered ones),
            module not importable (chained to the ImportError) or attribute missing.
        ConfigError: ``options`` where none apply; the object is not a usable plugin.
        ModelLoadError: the module, class or factory raised while being imported or built.
    """
    if ":" not in config.name:
        if config.options:
            raise ConfigError(
                f"plugin {config.name!r} is registered, already built, and takes no options; "
                "options apply to classes and factories named by import path"
            )
        plugin = get_registered_backend(config.name)
        return PluginBackend(plugin, name=config.name, timeout_s=config.timeout_s,
                             max_threads=config.max_threads)
    target = import_plugin_object(config.name)
    plugin, built = _build(target, config.name, config.options)
    check_plugin_object(plugin, label=f"plugin {config.name!r}")
    return PluginBackend(
        plugin, name=config.name, timeout_s=config.timeout_s, owns_plugin=built,
        max_threads=config.max_threads,
    )


def import_plugin_object(path: str) -> Any:
    """Import ``package.module:attr`` (``attr`` may be dotted) and return the object.

    Raises:
        ConfigError: the path is not of the form ``module:attr``.
        ModelNotFoundError: the module cannot be imported, or has no such attribute.
        ModelLoadError: importing the module raised something other than ImportError.
    """
    module_name, _, attr_path = path.partition(":")
    parts = attr_path.split(".")
    if not module_name or not attr_path or ":" in attr_path or not all(parts):
        raise ConfigError(
            f"plugin import path {path!r} must look like 'package.module:attr' "
            "(attr may be dotted, e.g. 'package.module:Class')"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelNotFoundError(
            f"cannot import plugin module {module_name!r} for {path!r}: {exc}. {_RAY_HINT}"
        ) from exc
    except Exception as exc:
        raise ModelLoadError(
            f"importing plugin module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    for i, part in enumerate(parts):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            where = ".".join([module_name, *parts[:i]])
            raise ModelNotFoundError(
                f"{where!r} has no attribute {part!r} (plugin {path!r})"
            ) from exc
    return obj


def _build(target: Any, path: str, options: dict[str, Any]) -> tuple[Any, bool]:
    """Apply the import-path rule; the flag says whether a new object was built."""
    if inspect.isclass(target):
        return _call_constructor(target, path, options), True
    if callable(getattr(target, "score", None)):
        if options:
            raise ConfigError(
                f"plugin {path!r} names an object that is already built, so it takes no "
                f"options (got {sorted(options)}); name its class or a factory instead"
            )
        return target, False
    if callable(target) and options:
        return _call_constructor(target, path, options), True
    return target, False


def _call_constructor(factory: Any, path: str, options: dict[str, Any]) -> Any:
    try:
        return factory(**options)
    except RerankerError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"building plugin {path!r} with options {sorted(options)} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
