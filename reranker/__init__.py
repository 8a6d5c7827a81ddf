"""reranker: cross-encoder reranking with exact scores, one API for every backend.

Public API (everything else may change between releases)::

    from reranker import Reranker, rerank
    Reranker("fast").rerank("query", ["doc a", "doc b"], top_k=1)
"""

from __future__ import annotations

from reranker.api import Reranker, rerank
from reranker.backends import RerankerBackend, build_backend
from reranker.config import (
    BackendConfig,
    CustomConfig,
    LlmConfig,
    PluginConfig,
    PresetConfig,
    parse_backend_config,
)
from reranker.errors import (
    BackendError,
    BackendTimeoutError,
    ConfigError,
    DownloadError,
    InputTooLongError,
    InvalidInputError,
    ModelLoadError,
    ModelNotFoundError,
    ProviderError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderStatusError,
    ProviderTimeoutError,
    RequestTooLargeError,
    RerankerError,
)
from reranker.plugins import (
    clear_reranker_backends,
    list_reranker_backends,
    register_reranker_backend,
    unregister_reranker_backend,
)
from reranker.presets import PRESETS, Preset
from reranker.types import RerankResult, RerankResults, Usage

__version__ = "0.1.0"

__all__ = [
    "Reranker",
    "rerank",
    "RerankerBackend",
    "build_backend",
    "BackendConfig",
    "PresetConfig",
    "CustomConfig",
    "LlmConfig",
    "PluginConfig",
    "parse_backend_config",
    "register_reranker_backend",
    "unregister_reranker_backend",
    "list_reranker_backends",
    "clear_reranker_backends",
    "PRESETS",
    "Preset",
    "RerankResult",
    "RerankResults",
    "Usage",
    "RerankerError",
    "InvalidInputError",
    "InputTooLongError",
    "RequestTooLargeError",
    "ConfigError",
    "ModelNotFoundError",
    "DownloadError",
    "ModelLoadError",
    "ProviderError",
    "ProviderStatusError",
    "ProviderTimeoutError",
    "ProviderRateLimitError",
    "ProviderResponseError",
    "BackendError",
    "BackendTimeoutError",
    "__version__",
]
