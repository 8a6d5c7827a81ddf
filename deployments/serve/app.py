"""The Ray Serve app builder: ``import_path: deployments.serve.app:build_app`` in serve_config.yaml.

One ingress deployment (``RerankIngress``) and one deployment per backend variant that has
configured models (``PresetScorer``, ``CustomScorer``, ``LlmScorer``, ``PluginScorer``), each with
its own replica options, autoscaling and batching ``user_config``. A ``deployments:`` section in
serve_config.yaml can still override any of them by these names.

Secrets are read here, at the edge: ``api_key_env`` names the environment variable holding the
accepted keys (comma-separated) and its value is read once, when the app is built; so is the
tracing endpoint (``tracing.otlp_endpoint``, else ``OTEL_EXPORTER_OTLP_ENDPOINT``).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Any, cast

from ray import serve
from ray.serve import Application, Deployment

from deployments.serve.args import AppArgs, LimitsArgs
from deployments.serve.ingress import RerankIngress
from deployments.serve.keys import read_api_keys
from deployments.serve.scorer import scorer_class
from deployments.serve.service import IngressSettings
from reranker.config import BackendConfig, LocalModelConfig
from reranker.registry import variant, variant_names

__all__ = [
    "build_app", "deployment_name", "ingress_options", "read_api_keys", "tracing_endpoint",
    "with_limits",
]

def deployment_name(name: str) -> str:
    """The Serve deployment name of a variant (``PresetScorer`` for ``preset``, ...)."""
    return f"{variant(name).name.capitalize()}Scorer"


def tracing_endpoint(args: AppArgs, environ: Mapping[str, str] | None = None) -> str | None:
    """Where spans go: ``tracing.otlp_endpoint``, else ``OTEL_EXPORTER_OTLP_ENDPOINT``, else
    nowhere (tracing off)."""
    env = os.environ if environ is None else environ
    return args.tracing.otlp_endpoint or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None


def ingress_options(args: AppArgs) -> dict[str, Any]:
    """``Deployment.options`` of the ingress: its configured options, and a 429 with
    ``Retry-After`` when the HTTP proxy's queue for it is full (Serve's default is a 503),
    on Ray versions that have ``backpressure_config``."""
    opts = args.deployments.ingress.serve_options()
    if "backpressure_config" in inspect.signature(Deployment.options).parameters:
        opts["backpressure_config"] = {"status_code": 429, "retry_after_s": 1.0}
    return opts


def with_limits(cfg: BackendConfig, limits: LimitsArgs) -> BackendConfig:
    """``cfg`` with the app's token budget where a local model sets none of its own."""
    if isinstance(cfg, LocalModelConfig) and cfg.max_request_tokens is None:
        return cfg.model_copy(update={"max_request_tokens": limits.max_request_tokens})
    return cfg


def build_app(args: AppArgs | Mapping[str, Any]) -> Application:
    """Build the rerank app from validated arguments.

    Example:
        >>> app = build_app({"models": {"fast": "fast"}})               # doctest: +SKIP
        >>> serve.run(app, route_prefix="/")                             # doctest: +SKIP

    Args:
        args: an :class:`AppArgs` or the mapping ``serve_config.yaml`` holds (validated here,
            so bad configs fail at deploy time with the field named).
    """
    cfg = args if isinstance(args, AppArgs) else AppArgs.model_validate(dict(args))
    default = cfg.default_model_name
    traces_to = tracing_endpoint(cfg)
    scorers: dict[str, Application] = {}
    for kind in variant_names():
        models = {n: with_limits(c, cfg.limits) for n, c in cfg.models_of(kind).items()}
        if not models:
            continue
        opts = cfg.deployments.variant(kind)
        warm = cfg.warm_models_of(kind)
        # serve.deployment(cls) is a Deployment; Ray annotates it as the decorator factory.
        scorer = cast(Deployment, serve.deployment(scorer_class(opts.max_models_per_replica)))
        deployment = scorer.options(
            name=deployment_name(kind),
            user_config=opts.batching.model_dump(),
            **opts.serve_options(),
        )
        if traces_to is None:
            scorers[kind] = deployment.bind(kind, models, warm)
        else:
            scorers[kind] = deployment.bind(kind, models, warm, traces_to,
                                            f"{cfg.tracing.service_name}-{kind}")
    settings = IngressSettings(
        models=dict(cfg.models),
        default_model=default,
        chunk_size=cfg.chunk_size,
        max_chunks_in_flight=cfg.max_chunks_in_flight,
        request_timeout_s=cfg.request_timeout_s,
        limits=cfg.limits,
        images=cfg.images,
        api_keys=read_api_keys(cfg.api_key_env),
        debug=cfg.debug,
        tei_auto_truncate=cfg.tei_auto_truncate,
        fallbacks={name: tuple(chain) for name, chain in cfg.fallbacks.items()},
        tracing_endpoint=traces_to,
        tracing_service_name=cfg.tracing.service_name,
    )
    ingress = cast(Deployment, RerankIngress).options(name="RerankIngress", **ingress_options(cfg))
    return ingress.bind(settings, scorers)
