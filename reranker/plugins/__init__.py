"""Plugin backends: bring your own scorer, by registered name or by import path.

A plugin is an object with ``score(query, documents)`` (sync or ``async def``) returning one raw
score per document in input order, or a plain callable ``fn(query, documents)`` doing the same.
Optional attributes: ``scores_are_probabilities`` (default ``False``: scores are logits and get
a sigmoid), ``max_length`` and ``close()``. ``docs/plugins.md`` has the whole contract.

Example:
    >>> from reranker import Reranker
    >>> from reranker.plugins import register_reranker_backend, unregister_reranker_backend
    >>> register_reranker_backend("by_length", lambda q, docs: [len(d) for d in docs])
    >>> [r.index for r in Reranker("plugin:by_length").rerank("q", ["ab", "abcd", "a"])]
    [1, 0, 2]
    >>> unregister_reranker_backend("by_length")
"""

from __future__ import annotations

from reranker.plugins._adapter import PluginBackend
from reranker.plugins._loader import import_plugin_object, load_plugin_backend
from reranker.plugins._registry import (
    clear_reranker_backends,
    list_reranker_backends,
    register_reranker_backend,
    unregister_reranker_backend,
)

__all__ = [
    "register_reranker_backend",
    "unregister_reranker_backend",
    "list_reranker_backends",
    "clear_reranker_backends",
    "load_plugin_backend",
    "import_plugin_object",
    "PluginBackend",
]
