"""Which rerank providers there are: liter-llm's own table, read at run time.

A provider is any entry of ``liter_llm.all_providers()`` whose ``endpoints`` include
``"rerank"``; a new liter-llm release that adds one adds it here without a code change. What
liter-llm's table does not say (the wire format in words, whether scores are logits, document
limits and request fields a provider takes) is the small :data:`_KNOWN` table below, checked
against each provider's documentation and against what liter-llm 2.4.0 puts on the wire (see
``tests/integration/provider_standins.py``). A provider missing from it works with the defaults.

liter-llm is imported on first use only, so ``import reranker`` does not load it; without it the
``llm`` variant is a :class:`~reranker.errors.ConfigError` naming the extra to install.

Example:
    >>> [p.name for p in rerank_providers()][:3]                  # doctest: +SKIP
    ['bedrock', 'cohere', 'dashscope']
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from reranker.errors import ConfigError

__all__ = [
    "ALIASES",
    "ProviderInfo",
    "canonical_provider",
    "load_liter_llm",
    "provider_info",
    "provider_names",
    "providers_markdown",
    "rerank_providers",
]

ALIASES: dict[str, str] = {"jina": "jina_ai"}
"""Names this project used before liter-llm (``jina:MODEL``) -> liter-llm's name."""

_EXTRA_HINT = "the llm variant needs liter-llm: pip install 'reranker[providers]'"


@dataclass(frozen=True)
class _Known:
    wire: str
    scores: str = "probability"
    default_base_url: str | None = None
    max_tokens_per_doc: bool = False
    hard_max_documents: int | None = None
    default_max_documents: int = 1000
    extra_body: dict[str, Any] = field(default_factory=dict)
    key_env: tuple[str, ...] | None = None
    notes: str = ""


_COHERE_LIKE = (
    "`POST {base}/rerank`: `model, query, documents, top_n` -> "
    "`results[{index, relevance_score}]`"
)

_KNOWN: dict[str, _Known] = {
    "cohere": _Known(
        "Cohere v2 `POST {base}/rerank` (`top_n`, `max_tokens_per_doc`) -> "
        "`results`, `meta.billed_units`",
        # liter-llm's table points at /v1; v2 is the API that takes max_tokens_per_doc.
        default_base_url="https://api.cohere.com/v2",
        max_tokens_per_doc=True, hard_max_documents=10_000,
        notes="`max_tokens_per_doc` passed on; at most 10,000 documents a request.",
    ),
    "jina_ai": _Known(
        "Jina `POST {base}/rerank` (`top_n`, `return_documents`) -> `results`",
        extra_body={"return_documents": False},
        notes="`jina_ai:MODEL` works too.",
    ),
    "voyage": _Known(
        "Voyage `POST {base}/rerank` (`top_k`, `truncation`) -> `data`",
        hard_max_documents=1000, extra_body={"truncation": True},
        notes="At most 1,000 documents and a token total a request; over-long pairs are "
        "truncated server-side.",
    ),
    "nvidia_nim": _Known(
        "NVIDIA NIM `POST {base}/ranking`: `query{text}, passages[{text}]` -> "
        "`rankings[{index, logit}]`",
        scores="logit", notes="Scores are logits (a sigmoid makes them probabilities).",
    ),
    "huggingface": _Known(
        "text-embeddings-inference `POST {base}/rerank`: `query, texts` -> `[{index, score}]`",
        notes="Hugging Face router or any TEI server (`base_url`).",
    ),
    "bedrock": _Known(
        "AWS Bedrock Agent Runtime `POST {base}/rerank`: `queries, sources, "
        "rerankingConfiguration` -> `results[{index, relevanceScore}]`",
        key_env=("AWS_BEARER_TOKEN_BEDROCK", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_REGION"),
        notes="liter-llm signs with the AWS credentials of the environment; with a "
        "`base_url` it sends none (point it only at a signing proxy). The model is a "
        "foundation-model id (`amazon.rerank-v1:0`).",
    ),
    "dashscope": _Known(
        "DashScope compatible `POST {host}/compatible-api/v1/reranks` -> `results`",
        notes="liter-llm keeps only the host of `base_url`.",
    ),
    "qwen_ai_platform": _Known(
        "DashScope compatible `POST {host}/compatible-api/v1/reranks` -> `results`",
        notes="liter-llm keeps only the host of `base_url`.",
    ),
    "llamacpp": _Known(
        "llama.cpp server " + _COHERE_LIKE, scores="logit",
        notes="Local server, no key; `relevance_score` is the head's raw score (a logit) for "
        "BERT-style rerankers (ggml-org/llama.cpp#8555).",
    ),
    "localai": _Known("LocalAI " + _COHERE_LIKE, notes="Local server, no key."),
    "vllm": _Known("vLLM " + _COHERE_LIKE, notes="Local server; a key only if it sets one."),
    "hosted_vllm": _Known("vLLM " + _COHERE_LIKE, notes="Your own vLLM server."),
    "deepinfra": _Known("DeepInfra " + _COHERE_LIKE),
    "fireworks_ai": _Known("Fireworks AI " + _COHERE_LIKE),
}
_SELF_CREDENTIALED = frozenset({"bedrock"})
_DEFAULT = _Known("as liter-llm sends it (not described here yet)")


@dataclass(frozen=True)
class ProviderInfo:
    """One rerank provider as liter-llm knows it, plus what this project knows about it.

    Attributes:
        name: liter-llm's provider name, the ``llm`` config's ``provider`` (``"nvidia_nim"``).
        display_name: liter-llm's human name (``"Nvidia NIM"``).
        default_base_url: where requests go without ``base_url``; ``None``: give one.
        key_env: environment variables holding the credentials (the first is read when the
            config names none); empty for local servers that take no key.
        wire: the request and response shape, in words.
        scores_are_probabilities: ``False`` where the API answers logits.
        max_tokens_per_doc: the API takes a per-document token cap.
        hard_max_documents: the most documents one request may carry, where documented.
        default_max_documents: documents per request when the config does not say.
        extra_body: fields added to every request (``{"truncation": True}`` for Voyage).
        notes: one line a user reads.
    """

    name: str
    display_name: str
    default_base_url: str | None
    key_env: tuple[str, ...]
    wire: str
    scores_are_probabilities: bool
    max_tokens_per_doc: bool
    hard_max_documents: int | None
    default_max_documents: int
    extra_body: dict[str, Any]
    notes: str

    @property
    def reads_key(self) -> bool:
        """This project reads ``key_env[0]`` and hands it to liter-llm (``False`` for local
        servers, and for Bedrock, whose AWS credentials liter-llm reads itself)."""
        return bool(self.key_env) and self.name not in _SELF_CREDENTIALED

    @property
    def example(self) -> str:
        """The shorthand a user types (``nvidia_nim:MODEL``)."""
        short = next((a for a, n in ALIASES.items() if n == self.name), self.name)
        return f"{short}:MODEL"


def load_liter_llm() -> ModuleType:
    """``liter_llm``, or a :class:`ConfigError` naming the extra that installs it."""
    try:
        import liter_llm
    except ImportError as exc:
        raise ConfigError(_EXTRA_HINT) from exc
    return liter_llm


@functools.lru_cache(maxsize=1)
def rerank_providers() -> tuple[ProviderInfo, ...]:
    """Every provider liter-llm reranks through, sorted by name."""
    lib = load_liter_llm()
    found = []
    for cfg in lib.all_providers():
        if "rerank" not in (cfg.endpoints or ()):
            continue
        known = _KNOWN.get(cfg.name, _DEFAULT)
        env = cfg.auth.env_var if cfg.auth is not None else None
        key_env = known.key_env if known.key_env is not None else ((env,) if env else ())
        found.append(ProviderInfo(
            name=cfg.name,
            display_name=cfg.display_name or cfg.name,
            default_base_url=known.default_base_url or cfg.base_url,
            key_env=key_env,
            wire=known.wire,
            scores_are_probabilities=known.scores == "probability",
            max_tokens_per_doc=known.max_tokens_per_doc,
            hard_max_documents=known.hard_max_documents,
            default_max_documents=known.default_max_documents,
            extra_body=dict(known.extra_body),
            notes=known.notes,
        ))
    return tuple(sorted(found, key=lambda p: p.name))


def provider_names() -> tuple[str, ...]:
    """liter-llm's rerank providers (``("bedrock", "cohere", ...)``)."""
    return tuple(p.name for p in rerank_providers())


def canonical_provider(name: str) -> str:
    """liter-llm's name for ``name`` (aliases resolved); :class:`ConfigError` listing the valid
    ones when it is not a rerank provider."""
    canonical = ALIASES.get(name, name)
    if canonical not in provider_names():
        raise ConfigError(
            f"unknown provider {name!r}; expected one of: {', '.join(provider_names())} "
            f"(liter-llm's rerank providers; alias: "
            f"{', '.join(f'{a} = {n}' for a, n in ALIASES.items())})"
        )
    return canonical


def provider_info(name: str) -> ProviderInfo:
    """The provider called ``name`` (or an alias of it)."""
    canonical = canonical_provider(name)
    return next(p for p in rerank_providers() if p.name == canonical)


def providers_markdown() -> str:
    """The Providers table (Markdown): name, shorthand, key variable, wire format, notes.

    Rendered from liter-llm's provider list, so the docs site and ``reranker providers`` show
    what the installed liter-llm reranks through.
    """
    lib = load_liter_llm()
    rows = [
        "| provider | shorthand | API key from | wire format | notes |",
        "|---|---|---|---|---|",
    ]
    for p in rerank_providers():
        env = ", ".join(f"`{e}`" for e in p.key_env) if p.key_env else "none (local server)"
        base = (f"Default base URL `{p.default_base_url}`." if p.default_base_url
                else "No default base URL: set `base_url`.")
        wire = p.wire.replace("{base}", "base").replace("{host}", "host").replace("|", "\\|")
        notes = " ".join(x for x in (base, p.notes) if x)
        rows.append(f"| {p.display_name} | `{p.example}` | {env} | {wire} | {notes} |")
    version = getattr(lib, "__version__", None) or _dist_version()
    rows.append("")
    rows.append(f"Providers of liter-llm {version}: every one reranks through it.")
    return "\n".join(rows) + "\n"


def _dist_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("liter-llm")
    except PackageNotFoundError:  # pragma: no cover - imported but not installed as a dist
        return "(unknown version)"
