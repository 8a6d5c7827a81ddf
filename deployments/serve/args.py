"""The arguments of the Ray Serve app builder, as frozen pydantic models.

``serve_config.yaml``'s ``applications[].args`` are validated into :class:`AppArgs` by
``deployments.serve.app.build_app`` before anything is deployed, so a typo in a model config or an
unknown option fails ``serve run`` / ``serve deploy`` with a message naming the field.

Models are named: ``models`` maps the name a client sends as ``model`` to a backend config (the
``reranker`` union, or its string shorthand). Each config's ``type`` picks the variant
deployment (``preset``, ``custom``, ``llm``, ``plugin``) that hosts it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from reranker import registry
from reranker.config import BackendConfig, parse_backend_config

__all__ = [
    "AppArgs",
    "AutoscalingArgs",
    "BatchingArgs",
    "DeploymentsArgs",
    "IngressDeploymentArgs",
    "LimitsArgs",
    "TracingArgs",
    "VariantDeploymentArgs",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LimitsArgs(_Frozen):
    """Request limits enforced by the ingress (413 when exceeded)."""

    max_documents: int = Field(default=10_000, ge=1, description="Documents per request.")
    max_document_chars: int = Field(
        default=100_000, ge=1, description="Characters per document (after rank_fields)."
    )
    max_query_chars: int = Field(default=10_000, ge=1, description="Characters in the query.")
    max_body_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="Bytes in a request body."
    )
    max_request_tokens: int = Field(
        default=1_048_576, ge=1,
        description="Tokens one request may run on a local model, over all its chunks: "
        "counted once at the ingress by the model's tokenizer after truncation and chunking "
        "(every window, query included); 413 request_too_large beyond, before any chunk runs. "
        "Models that set no max_request_tokens of their own get this one (each scorer call "
        "is bounded by it too).",
    )
    max_inflight_body_bytes: int = Field(
        default=128 * 1024 * 1024,
        ge=1024,
        description="Bytes of request bodies one ingress replica holds at once (429 with "
        "Retry-After beyond); at least max_body_bytes.",
    )

    @model_validator(mode="after")
    def _one_body_fits(self) -> LimitsArgs:
        if self.max_inflight_body_bytes < self.max_body_bytes:
            raise ValueError(
                f"max_inflight_body_bytes ({self.max_inflight_body_bytes}) is below "
                f"max_body_bytes ({self.max_body_bytes}): a request at the limit could never run"
            )
        return self


class RemoteImagesArgs(_Frozen):
    """Fetching image URLs named in requests (off: server-side request forgery otherwise)."""

    enabled: bool = Field(default=False, description="Fetch http(s) image URLs at all.")
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Hosts (or host:port) images may be fetched from.")
    timeout_s: float = Field(default=10.0, gt=0, description="Bound on one image fetch.")


class ImagesArgs(_Frozen):
    """Image documents (vision rerankers): what one image may cost (413 beyond)."""

    max_image_bytes: int = Field(default=20 * 2**20, ge=1024,
                                 description="Encoded bytes per image.")
    max_image_pixels: int = Field(default=40_000_000, ge=1024,
                                  description="Decoded pixels per image (decompression bombs).")
    remote: RemoteImagesArgs = Field(default_factory=RemoteImagesArgs)


class TracingArgs(_Frozen):
    """OpenTelemetry tracing (``deployments.serve.tracing``); off unless an endpoint is set."""

    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector base URL (spans go to <url>/v1/traces); unset: the "
        "OTEL_EXPORTER_OTLP_ENDPOINT environment variable where the app is built, else off.",
    )
    service_name: str = Field(default="reranker", min_length=1,
                              description="The service.name resource of every span.")


class AutoscalingArgs(_Frozen):
    """Ray Serve's ``autoscaling_config`` (the fields this app sets; see Ray's docs)."""

    min_replicas: int = Field(default=1, ge=0)
    initial_replicas: int | None = Field(default=None, ge=0)
    max_replicas: int = Field(default=2, ge=1)
    target_ongoing_requests: float = Field(default=2.0, gt=0)
    upscale_delay_s: float = Field(default=30.0, ge=0)
    downscale_delay_s: float = Field(default=600.0, ge=0)
    metrics_interval_s: float = Field(default=10.0, gt=0)
    look_back_period_s: float = Field(
        default=30.0, gt=0,
        description="Window the ongoing-request average is taken over; a scale-down is only "
        "decided once the window no longer holds the load, so it adds to downscale_delay_s.",
    )
    downscaling_factor: float | None = Field(
        default=None, gt=0,
        description="Multiplies each scale-down step (Serve's default 1.0: straight to the "
        "target); below 1 scales down in smaller steps.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingArgs:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must be <= max_replicas")
        return self


class BatchingArgs(_Frozen):
    """Dynamic batching of a variant's replicas; sent as ``user_config`` (no redeploy)."""

    max_batch_size: int = Field(default=16, ge=1, description="Requests merged into one call.")
    batch_wait_timeout_s: float = Field(
        default=0.005, ge=0, description="How long the first request waits for company."
    )


class _DeploymentArgs(_Frozen):
    num_replicas: int | None = Field(
        default=None, ge=1, description="Fixed replica count; unset: use autoscaling_config."
    )
    autoscaling_config: AutoscalingArgs | None = None
    ray_actor_options: dict[str, Any] = Field(default_factory=lambda: {"num_cpus": 1})
    max_ongoing_requests: int = Field(default=32, ge=1)
    # Bounded by default so a flood is answered 429 instead of queueing without end; -1 lifts
    # the bound.
    max_queued_requests: int = Field(
        default=64, ge=-1,
        description="Requests waiting for a replica, per caller (429 beyond); -1: no bound.",
    )
    health_check_period_s: float = Field(default=10.0, gt=0)
    graceful_shutdown_timeout_s: float = Field(default=20.0, ge=0)
    max_replicas_per_node: int | None = Field(
        default=None, ge=1,
        description="At most this many replicas on one node (1: every replica on its own "
        "node, so losing a node loses one replica); unset: Serve spreads them best-effort.",
    )

    @field_validator("max_queued_requests")
    @classmethod
    def _queue_bound(cls, value: int) -> int:
        if value == 0:
            raise ValueError("max_queued_requests must be -1 (no bound) or at least 1")
        return value

    @model_validator(mode="after")
    def _one_scaling_mode(self) -> _DeploymentArgs:
        if self.num_replicas is not None and self.autoscaling_config is not None:
            raise ValueError("set num_replicas or autoscaling_config, not both")
        return self

    def serve_options(self) -> dict[str, Any]:
        """Keyword arguments for ``Deployment.options``."""
        opts: dict[str, Any] = {
            "ray_actor_options": dict(self.ray_actor_options),
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "health_check_period_s": self.health_check_period_s,
            "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
        }
        if self.max_replicas_per_node is not None:
            opts["max_replicas_per_node"] = self.max_replicas_per_node
        if self.num_replicas is not None:
            opts["num_replicas"] = self.num_replicas
        else:
            auto = self.autoscaling_config or AutoscalingArgs()
            opts["autoscaling_config"] = auto.model_dump(exclude_none=True)
        return opts


class VariantDeploymentArgs(_DeploymentArgs):
    """Options of one variant deployment (its replicas host that variant's models)."""

    max_models_per_replica: int = Field(
        default=3, ge=1, description="Models a replica keeps loaded (LRU beyond that)."
    )
    batching: BatchingArgs = Field(default_factory=BatchingArgs)

    @model_validator(mode="after")
    def _batch_fits(self) -> VariantDeploymentArgs:
        if self.batching.max_batch_size > self.max_ongoing_requests:
            raise ValueError(
                f"batching.max_batch_size ({self.batching.max_batch_size}) exceeds "
                f"max_ongoing_requests ({self.max_ongoing_requests}): a batch could never fill"
            )
        return self


class IngressDeploymentArgs(_DeploymentArgs):
    """Options of the HTTP ingress (validation, routing, fan-out, merging)."""

    ray_actor_options: dict[str, Any] = Field(default_factory=lambda: {"num_cpus": 0.5})
    max_ongoing_requests: int = Field(default=256, ge=1)
    max_queued_requests: int = Field(
        default=256, ge=-1,
        description="Requests the HTTP proxy holds for the ingress (429 beyond); -1: no bound.",
    )


def _llm_defaults() -> VariantDeploymentArgs:
    # Provider calls are I/O: many in flight per replica, no CPU to reserve, nothing to merge.
    return VariantDeploymentArgs(
        ray_actor_options={"num_cpus": 0.1},
        max_ongoing_requests=128,
        batching=BatchingArgs(max_batch_size=1, batch_wait_timeout_s=0.0),
    )


def _plugin_defaults() -> VariantDeploymentArgs:
    return VariantDeploymentArgs(max_ongoing_requests=64)


class DeploymentsArgs(_Frozen):
    """Per-deployment options: the ingress and one entry per variant."""

    ingress: IngressDeploymentArgs = Field(default_factory=IngressDeploymentArgs)
    preset: VariantDeploymentArgs = Field(default_factory=VariantDeploymentArgs)
    custom: VariantDeploymentArgs = Field(default_factory=VariantDeploymentArgs)
    llm: VariantDeploymentArgs = Field(default_factory=_llm_defaults)
    plugin: VariantDeploymentArgs = Field(default_factory=_plugin_defaults)

    def variant(self, name: str) -> VariantDeploymentArgs:
        """The options of the variant called ``name`` (one field per registry variant)."""
        opts: VariantDeploymentArgs = getattr(self, registry.variant(name).name)
        return opts


class AppArgs(_Frozen):
    """Everything ``build_app`` needs; what ``applications[].args`` holds in serve_config.yaml.

    Example (YAML)::

        args:
          default_model: fast
          models:
            fast: fast                                   # shorthand
            multi: {type: preset, name: multilingual, long_documents: chunk}
            cohere: {type: llm, provider: cohere, model: rerank-v3.5}
          chunk_size: 256
          limits: {max_documents: 10000}
          api_key_env: RERANKER_API_KEYS
          fallbacks: {cohere: [fast, first_stage]}       # when cohere rate-limits or fails
    """

    models: dict[str, BackendConfig] = Field(
        default_factory=lambda: {"fast": parse_backend_config("fast")},
        description="Model name -> backend config (or shorthand string).",
    )
    default_model: str | None = Field(
        default=None, description="Used when a request names no model; default: the first."
    )
    warm_models: list[str] | None = Field(
        default=None,
        description="Models every replica of their variant loads and warms up before it "
        "reports ready; default: the default model, or the variant's first model.",
    )
    chunk_size: int = Field(
        default=256, ge=1, description="Documents per scorer call; larger sets fan out."
    )
    max_chunks_in_flight: int = Field(
        default=8, ge=1,
        description="Scorer calls one request has in flight at once; its other chunks wait "
        "their turn, so one large in-limit request never fills the scorers' queue "
        "(max_queued_requests, 64 by default) by itself and gets a 429.",
    )
    request_timeout_s: float = Field(
        default=120.0, gt=0, description="Bound on one scorer call (504 beyond)."
    )
    limits: LimitsArgs = Field(default_factory=LimitsArgs)
    images: ImagesArgs = Field(default_factory=ImagesArgs)
    api_key_env: str | None = Field(
        default=None,
        description="Environment variable with the accepted API keys (comma-separated); "
        "unset: no authentication.",
    )
    debug: bool = Field(
        default=False,
        description="Let clients ask (header x-reranker-debug: 1) for per-chunk replica and "
        "batch details in the response's meta.",
    )
    tei_auto_truncate: bool = Field(
        default=True,
        description="What POST /rerank (TEI shape) does with a request that omits 'truncate': "
        "cut over-long texts (true, like text-embeddings-inference's --auto-truncate) or "
        "answer 413 (false, TEI's own default).",
    )
    fallbacks: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Model -> the configured models that answer, in order, when it "
        "rate-limits, fails or times out (never on client errors), optionally ending in "
        "'first_stage' (the candidates in input order); unset: a failure fails the request.",
    )
    tracing: TracingArgs = Field(default_factory=TracingArgs)
    deployments: DeploymentsArgs = Field(default_factory=DeploymentsArgs)

    @field_validator("models", mode="before")
    @classmethod
    def _parse_models(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {name: parse_backend_config(cfg) for name, cfg in value.items()}

    @model_validator(mode="after")
    def _check_models(self) -> AppArgs:
        if not self.models:
            raise ValueError("models must name at least one model")
        for name in self.models:
            if not name or name != name.strip():
                raise ValueError(f"model name {name!r} must be non-empty without outer spaces")
        if self.default_model is not None and self.default_model not in self.models:
            raise ValueError(
                f"default_model {self.default_model!r} is not in models "
                f"({', '.join(self.models)})"
            )
        unknown = [n for n in self.warm_models or () if n not in self.models]
        if unknown:
            raise ValueError(f"warm_models names unknown models: {', '.join(unknown)}")
        for variant in registry.variant_names():
            cap = self.deployments.variant(variant).max_models_per_replica
            if len(self.warm_models_of(variant)) > cap:
                raise ValueError(
                    f"more warm_models for the {variant} variant than its "
                    f"max_models_per_replica ({cap})"
                )
        _check_fallbacks(self.fallbacks, self.models)
        return self

    @property
    def default_model_name(self) -> str:
        return self.default_model or next(iter(self.models))

    def warm_models_of(self, variant: str) -> list[str]:
        """What a replica of ``variant`` loads before it reports ready."""
        hosted = self.models_of(variant)
        if not hosted:
            return []
        if self.warm_models is not None:
            return [n for n in self.warm_models if n in hosted]
        default = self.default_model_name
        return [default] if default in hosted else [next(iter(hosted))]

    def models_of(self, variant: str) -> dict[str, BackendConfig]:
        """The configured models that ``variant`` hosts, in config order."""
        return {name: cfg for name, cfg in self.models.items() if cfg.type == variant}


_FIRST_STAGE = "first_stage"  # deployments.serve.fallback.FIRST_STAGE, kept import-free here


def _check_fallbacks(fallbacks: dict[str, list[str]], models: dict[str, BackendConfig]) -> None:
    for name, chain in fallbacks.items():
        where = f"fallbacks.{name}"
        if name not in models:
            raise ValueError(f"{where}: {name!r} is not in models ({', '.join(models)})")
        if not chain:
            raise ValueError(f"{where} is empty; drop it to fail instead of falling back")
        if len(set(chain)) != len(chain):
            raise ValueError(f"{where} names a model twice: {chain}")
        for i, target in enumerate(chain):
            if target == _FIRST_STAGE:
                if i != len(chain) - 1:
                    raise ValueError(f"{where}: {_FIRST_STAGE!r} can only be the last fallback")
            elif target not in models:
                raise ValueError(
                    f"{where}: {target!r} is not in models ({', '.join(models)}) "
                    f"and is not {_FIRST_STAGE!r}"
                )
            elif target == name:
                raise ValueError(f"{where}: a model cannot fall back to itself")
    cycle = _find_cycle(fallbacks)
    if cycle:
        raise ValueError(f"fallbacks form a cycle: {' -> '.join(cycle)}")


def _find_cycle(fallbacks: dict[str, list[str]]) -> list[str]:
    # Depth-first search over model -> fallback edges; returns the cycle's path, or [].
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str]:
        if node in path:
            return [*path[path.index(node):], node]
        if node in done:
            return []
        for target in fallbacks.get(node, ()):
            found = visit(target, [*path, node])
            if found:
                return found
        done.add(node)
        return []

    for start in fallbacks:
        found = visit(start, [])
        if found:
            return found
    return []
