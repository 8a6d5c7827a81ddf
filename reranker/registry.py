"""The one registry: variant name -> config class -> backend factory, provider name -> class.

Every place that needs the list of variants or providers (config parsing, the CLIs, the Serve
app, the batch job, the HTTP schemas) reads it here, and an unknown name is a
:class:`~reranker.errors.ConfigError` that lists the valid ones. Factories and provider classes
are named by import path and imported on first use, so that ``import reranker`` stays light (no
ONNX Runtime, no httpx) until a backend of that kind is asked for.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reranker.config import (
    PROVIDERS,
    BackendConfig,
    CustomConfig,
    LlmConfig,
    PluginConfig,
    PresetConfig,
    parse_backend_config,
)
from reranker.errors import ConfigError
from reranker.presets import get_preset
from reranker.types import DECODER_TRUNCATION_FIELDS, TRUNCATION_FIELDS

if TYPE_CHECKING:
    from reranker.backends.base import RerankerBackend
    from reranker.providers.base import RerankProvider

__all__ = [
    "PROVIDERS",
    "VARIANTS",
    "Variant",
    "build_backend",
    "provider_class",
    "provider_names",
    "provider_truncation_fields",
    "truncation_fields_of",
    "variant",
    "variant_names",
]


@dataclass(frozen=True)
class Variant:
    """A backend variant: its config class and the ``module:function`` that builds it."""

    name: str
    config_class: type[PresetConfig | CustomConfig | LlmConfig | PluginConfig]
    factory: str

    @property
    def runs_locally(self) -> bool:
        """Whether its models run in this process (and so apply every truncation field)."""
        return self.config_class.runs_locally


VARIANTS: dict[str, Variant] = {
    v.name: v for v in (
        Variant("preset", PresetConfig, "reranker.backends.local:load_local_backend"),
        Variant("custom", CustomConfig, "reranker.backends.local:load_local_backend"),
        Variant("llm", LlmConfig, "reranker.providers:build_provider_backend"),
        Variant("plugin", PluginConfig, "reranker.plugins:load_plugin_backend"),
    )
}


def variant_names() -> tuple[str, ...]:
    """``("preset", "custom", "llm", "plugin")``."""
    return tuple(VARIANTS)


def provider_names() -> tuple[str, ...]:
    """``("cohere", "jina", "voyage")``."""
    return tuple(PROVIDERS)


def variant(name: str) -> Variant:
    """The variant called ``name``; :class:`ConfigError` listing the valid ones if unknown."""
    found = VARIANTS.get(name)
    if found is None:
        raise ConfigError(f"unknown variant {name!r}; expected one of: {', '.join(VARIANTS)}")
    return found


def _load(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def provider_class(name: str) -> type[RerankProvider]:
    """The provider class called ``name``; :class:`ConfigError` listing the valid ones."""
    path = PROVIDERS.get(name)
    if path is None:
        raise ConfigError(f"unknown provider {name!r}; expected one of: {', '.join(PROVIDERS)}")
    cls: type[RerankProvider] = _load(path)
    return cls


def provider_truncation_fields(cls: type[RerankProvider]) -> frozenset[str]:
    """What a provider's API applies of a request's truncation: a document token cap where it
    takes ``max_tokens_per_doc`` (Cohere), nothing otherwise."""
    return frozenset({"max_document_tokens"}) if cls.supports_max_tokens_per_doc else frozenset()


def truncation_fields_of(config: BackendConfig) -> frozenset[str]:
    """The truncation fields the backend a config builds applies, without building it (a
    ``custom`` decoder repo is known only once loaded: its backend refuses the rest)."""
    if isinstance(config, PresetConfig) and get_preset(config.name).is_decoder:
        return DECODER_TRUNCATION_FIELDS
    if config.runs_locally:
        return frozenset(TRUNCATION_FIELDS)
    if isinstance(config, LlmConfig):
        return provider_truncation_fields(provider_class(config.provider))
    return frozenset()


def build_backend(config: BackendConfig | Any) -> RerankerBackend:
    """Build the backend a config (or shorthand) describes."""
    cfg = parse_backend_config(config)
    backend: RerankerBackend = _load(variant(cfg.type).factory)(cfg)
    return backend
