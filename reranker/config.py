"""Backend configuration: one frozen pydantic union on ``type`` and its string shorthand.

The same models are the arguments of the Ray Serve app builder, so a ``serve_config.yaml`` is
validated by this code. Nothing here reads the environment: secrets are read where a backend is
built (``api_key_env`` names the variable, it does not hold the key).

Shorthand (``parse_backend_config("...")``), read in this order, first match wins:

- ``fast`` / ``balanced`` / ...: the preset of that name
- ``plugin:NAME`` or ``plugin:pkg.mod:attr``: a registered plugin backend, or one by import path
- ``PROVIDER:MODEL`` (``cohere:rerank-v3.5``, ``nvidia_nim:MODEL``, ...): a provider-hosted
  model (``llm``), any rerank provider of liter-llm (``reranker providers``; ``jina:`` is an
  alias of ``jina_ai:``); an unknown provider is an error listing them
- starts with ``/``, ``./``, ``../``, ``~``: a local model folder (``custom``)
- ``owner/name`` or ``owner/name@REV``: a Hugging Face repo (``custom``), at a revision

Anything else is a :class:`~reranker.errors.ConfigError` that lists these forms.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from reranker.errors import ConfigError
from reranker.presets import PRESETS, get_preset

__all__ = [
    "BackendConfig",
    "PresetConfig",
    "CustomConfig",
    "LlmConfig",
    "PluginConfig",
    "LocalModelConfig",
    "parse_backend_config",
]

# A provider name as liter-llm spells them (``nvidia_nim``, ``fireworks_ai``): the shorthand's
# prefix. Which names exist is liter-llm's table, checked when the config is validated.
_PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Whether the model runs in this process (local ONNX) rather than behind an API or plugin.
    runs_locally: ClassVar[bool] = False
    #: Whether a call may be billed by someone else (a provider API): such a request must not
    #: be resent once it reached the backend. Plugins say so with their own attribute.
    billable: ClassVar[bool] = False

    min_score: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="Default relevance threshold: results whose probability is below it are "
        "dropped, unless a request sets its own min_score (or asks for raw scores). Default: "
        "keep every result.",
    )

    @property
    def display_name(self) -> str:
        """What serves this config, in messages, metrics and model lists (``preset:fast``)."""
        raise NotImplementedError

    @property
    def takes_instruction(self) -> bool | None:
        """Whether its backend takes a request's ``instruction`` (decoder rerankers do);
        ``None`` when only the loaded model can tell (a ``custom`` repo)."""
        return False


class LocalModelConfig(_Frozen):
    """Options shared by the two local ONNX variants (``preset`` and ``custom``)."""

    runs_locally: ClassVar[bool] = True

    max_length: int | None = Field(
        default=None,
        ge=8,
        description="Tokens per (query, document) pair; defaults to the model's own limit.",
    )
    batch_size: int = Field(default=32, ge=1, description="Most pairs in one ONNX run.")
    max_tokens_per_batch: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Most padded tokens in one ONNX run (token budget); default 512 on CPU (one "
            "RAG-sized pair per run, fastest there), 16384 on CUDA."
        ),
    )
    threads: int | None = Field(
        default=None, ge=1,
        description="Cores ONNX Runtime may use in all; default: the CPUs reserved for the "
        "Ray replica or actor that loads the model, else every core of this process.",
    )
    parallel_runs: int | None = Field(
        default=None,
        ge=1,
        description=(
            "ONNX runs in flight at once, sharing 'threads'; default: one single-threaded run "
            "per core on CPU (fastest there), one run on CUDA."
        ),
    )
    optimization: Literal["none", "fused", "int8"] = Field(
        default="none",
        description=(
            "'fused': ONNX Runtime transformer fusions of the float32 model; 'int8': fused, then "
            "dynamic int8 quantization with per-channel weights (faster on CPU; scores move by "
            "a few hundredths). Built at first use and cached by the model file's hash. "
            "Default 'none'; a preset may name its own CPU default ('fast': 'int8')."
        ),
    )
    device: Literal["cpu", "cuda", "auto"] = Field(
        default="cpu",
        description="'cuda' needs onnxruntime-gpu and a GPU; 'auto' uses CUDA when available.",
    )
    score_cache_size: int = Field(
        default=0,
        ge=0,
        description="Remember this many (query, document) scores (LRU); 0 turns it off.",
    )
    long_documents: Literal["truncate", "chunk"] = Field(
        default="truncate",
        description=(
            "'truncate' cuts documents at the window; 'chunk' scores overlapping windows and "
            "keeps the best (the Cohere behaviour)."
        ),
    )
    chunk_overlap: int = Field(default=32, ge=0, description="Tokens shared by adjacent windows.")
    max_chunks_per_doc: int = Field(
        default=10, ge=1, description="Most windows scored per document when chunking."
    )
    cache_dir: str | None = Field(
        default=None, description="Download cache; default: huggingface_hub's (HF_HUB_CACHE)."
    )
    instruction: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "Decoder rerankers (Qwen3-Reranker): the task instruction in the prompt; default "
            "the model card's web-search one. Other models take none."
        ),
    )
    calibrate_cpu: bool = Field(
        default=False,
        description=(
            "Cross-encoders on CPU with neither parallel_runs nor max_tokens_per_batch set: "
            "time a few run layouts at load (one run per core or one run with every core; "
            "512 or 2048 tokens per run) and keep the fastest, cached per CPU model, cores, "
            "onnxruntime version and model file. A few seconds at the first load. Off by "
            "default: on the Intel Xeon it was measured on, the defaults were fastest."
        ),
    )
    max_run_memory_mb: int = Field(
        default=2048,
        ge=1,
        description=(
            "Most transient memory of one ONNX run, attention (rows x heads x length^2 x 4 "
            "bytes) and activations counted: larger runs are split into fewer rows, and a pair "
            "that alone exceeds it runs alone (no other run of the model in flight), so a "
            "replica's run memory stays within parallel_runs x this or one full-window pair. "
            "Decoder rerankers refuse a max_length whose single pair exceeds it."
        ),
    )
    max_request_tokens: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Most tokens one request may run, counted after truncation and chunking (every "
            "window, query and special tokens included); beyond: RequestTooLargeError (HTTP "
            "413). Unset: no bound (the Serve app sets limits.max_request_tokens)."
        ),
    )


class PresetConfig(LocalModelConfig):
    """One of the bundled ONNX cross-encoders, downloaded on first use."""

    type: Literal["preset"] = "preset"
    name: str = Field(description=f"One of: {', '.join(PRESETS)}.")

    @model_validator(mode="before")
    @classmethod
    def _preset_optimization(cls, data: Any) -> Any:
        # A preset names its CPU default (``fast``: the int8 recipe, faster than the Hub's int8
        # file and closer to float32; see README, Performance). An explicit ``optimization``
        # wins, and so does a device other than the CPU, where int8 does not run.
        if not isinstance(data, Mapping) or "optimization" in data:
            return data
        preset = PRESETS.get(str(data.get("name")))
        if preset is None or data.get("device", "cpu") != "cpu":
            return data
        return {**data, "optimization": preset.optimization}

    @field_validator("name")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        get_preset(value)
        return value

    @property
    def display_name(self) -> str:
        return f"preset:{self.name}"

    @property
    def takes_instruction(self) -> bool | None:
        return get_preset(self.name).is_decoder


class CustomConfig(LocalModelConfig):
    """Any cross-encoder with an ONNX export or safetensors weights: a Hub repo id or a folder."""

    type: Literal["custom"] = "custom"
    model_id: str = Field(min_length=1, description="Hub repo id or local folder path.")
    revision: str | None = Field(default=None, description="Branch, tag or commit to pin.")
    model_file: str = Field(default="onnx/model.onnx", min_length=1)
    additional_files: tuple[str, ...] = Field(
        default=(), description="Extra files to fetch with the model (external data, configs)."
    )
    tokenizer_file: str = Field(default="tokenizer.json", min_length=1)
    model_format: Literal["auto", "onnx", "safetensors"] = Field(
        default="auto",
        description=(
            "'auto': model_file when the repo or folder has it, else the float32 ONNX graph "
            "built from config.json and the safetensors weights at first use (cached, no "
            "torch); 'onnx': model_file only (also what 'auto' means when model_file is given); "
            "'safetensors': always build from the weights."
        ),
    )

    rule: str | None = Field(
        default=None,
        description=(
            "The scoring rule (a family of the architecture table, see 'reranker models') for "
            "a checkpoint whose files cannot tell it: a local folder or a fine-tune of an "
            "architecture several rules share. Default: the only rule of its architecture, or "
            "the rule the table lists for the exact Hub repo id."
        ),
    )

    cutoff_layer: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Layerwise rerankers (bge-reranker-v2-minicpm-layerwise): the layer whose head "
            "scores, between the checkpoint's start_layer and num_hidden_layers; fewer layers "
            "run faster. Default: the last layer, as FlagEmbedding's cutoff_layers=None."
        ),
    )

    @field_validator("rule")
    @classmethod
    def _known_rule(cls, value: str | None) -> str | None:
        from reranker.models.architectures import rule_names

        if value is not None and value not in rule_names():
            raise ValueError(f"unknown rule {value!r}; rules: {', '.join(rule_names())}")
        return value

    @property
    def display_name(self) -> str:
        return f"custom:{self.model_id}" + (f"@{self.revision}" if self.revision else "")

    @property
    def takes_instruction(self) -> bool | None:
        # A configured instruction is refused at load unless the repo is a decoder reranker.
        return True if self.instruction is not None else None


class LlmConfig(_Frozen):
    """A provider-hosted rerank API reached over HTTP."""

    type: Literal["llm"] = "llm"
    provider: str = Field(
        description="A rerank provider of liter-llm (`reranker providers` lists them).")
    model: str = Field(min_length=1)
    api_key_env: str | None = Field(
        default=None,
        description="Environment variable holding the key; default the provider's own "
        "(COHERE_API_KEY, NVIDIA_NIM_API_KEY, ...: `reranker providers`).",
    )
    base_url: str | None = Field(default=None, description="Override for proxies and tests.")
    timeout_s: float = Field(default=30.0, gt=0, description="Per HTTP attempt.")
    max_retries: int = Field(default=3, ge=0, description="Retries after 429, 5xx, errors.")
    backoff_base_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=20.0, ge=0)
    max_documents_per_request: int | None = Field(
        default=None, ge=1, description="Split larger sets; default: the provider's limit."
    )
    max_tokens_per_doc: int | None = Field(default=None, ge=1)
    max_concurrency: int = Field(default=4, ge=1, description="Split requests in flight.")
    max_response_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024,
        description="Largest provider answer read; a larger one is refused before it is "
        "held whole (ProviderResponseError).",
    )
    billable: ClassVar[bool] = True

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        from reranker.providers.catalog import canonical_provider

        try:
            canonical_provider(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def display_name(self) -> str:
        return f"{self.provider}:{self.model}"


class PluginConfig(_Frozen):
    """A caller-supplied backend: a registered name or an import path ``pkg.mod:attr``."""

    type: Literal["plugin"] = "plugin"
    name: str = Field(min_length=1)
    timeout_s: float | None = Field(
        default=30.0, gt=0,
        description="Bound on one score call (BackendTimeoutError, HTTP 504, beyond); None: "
        "no bound.",
    )
    max_threads: int = Field(
        default=8, ge=1,
        description="Threads of the plugin's own pool, where sync plugins run (not the "
        "default executor that model loads use). A call that overruns keeps its thread; once "
        "every thread holds one, the plugin is unhealthy (Serve replaces the replica).",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for a factory named by path."
    )

    @property
    def display_name(self) -> str:
        return f"plugin:{self.name}"


BackendConfig = Annotated[
    Union[PresetConfig, CustomConfig, LlmConfig, PluginConfig],  # noqa: UP007
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(BackendConfig)

_SHORTHAND_HELP = (
    "expected a preset name ({presets}), 'PROVIDER:MODEL' (a rerank provider of liter-llm: "
    "`reranker providers`), 'plugin:NAME', a local folder starting with '/', './', '../' or "
    "'~', or a Hugging Face repo id 'owner/name[@revision]'"
)


def _from_shorthand(text: str) -> dict[str, Any]:
    text = text.strip()
    if text in PRESETS:
        return {"type": "preset", "name": text}
    head, sep, rest = text.partition(":")
    if sep and head == "plugin" and rest:
        return {"type": "plugin", "name": rest}
    if sep and _PROVIDER_NAME.match(head) and rest:
        return {"type": "llm", "provider": head, "model": rest}
    if text.startswith(("/", "./", "../", "~")) or text in (".", ".."):
        return {"type": "custom", "model_id": text}
    repo, at, revision = text.partition("@")
    if _REPO_ID.match(repo) and (not at or revision):
        return {"type": "custom", "model_id": repo, "revision": revision or None}
    raise ConfigError(
        f"cannot read model {text!r}: " + _SHORTHAND_HELP.format(presets=", ".join(PRESETS))
    )


def parse_backend_config(value: Any) -> BackendConfig:
    """Turn a config object, a mapping or a shorthand string into a validated config.

    Example:
        >>> parse_backend_config("fast").name
        'fast'
        >>> parse_backend_config("cohere:rerank-v3.5").provider
        'cohere'

    Raises:
        ConfigError: the value is not a valid config; the message names the field.
    """
    if isinstance(value, (PresetConfig, CustomConfig, LlmConfig, PluginConfig)):
        return value
    if isinstance(value, str):
        value = _from_shorthand(value)
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"model config must be a string or a mapping, got {type(value).__name__}"
        )
    try:
        return _ADAPTER.validate_python(dict(value))  # type: ignore[no-any-return]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid model config: {problems}") from exc
