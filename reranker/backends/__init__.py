"""Backend construction: an explicit map from config ``type`` to the factory that builds it.

Factories are imported on first use so that ``import reranker`` stays light (no ONNX Runtime,
no httpx) until a backend of that kind is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from reranker.backends.base import RerankerBackend
from reranker.config import BackendConfig, parse_backend_config

__all__ = ["RerankerBackend", "build_backend"]

_FACTORIES: dict[str, str] = {
    "preset": "reranker.backends.local:load_local_backend",
    "custom": "reranker.backends.local:load_local_backend",
    "llm": "reranker.providers:build_provider_backend",
    "plugin": "reranker.plugins:load_plugin_backend",
}


def build_backend(config: BackendConfig | Any) -> RerankerBackend:
    """Build the backend a config (or shorthand) describes."""
    cfg = parse_backend_config(config)
    module_name, _, attr = _FACTORIES[cfg.type].partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    backend: RerankerBackend = factory(cfg)
    return backend
