"""THE architecture table: which checkpoints the library builds, and how each one scores.

One :class:`Family` per scoring rule: the ``config.json`` ``architectures[0]`` and
``model_type`` values it covers, the exact Hub repo ids known to use it, the module that writes
its graph, its head per architecture, its inputs, padding side, window rule, run-memory
estimate and (decoders) prompt module. The registry and the runners read this table and nothing
else; the supported-models page and ``reranker models`` are rendered from it
(:func:`supported_models_markdown`).

:func:`resolve` picks a checkpoint's family: the configured ``rule`` when given, else the
family whose ``repos`` hold the exact repo id, else the only family of its architecture
(``architectures[0]``, or ``model_type`` when a config names no architecture). An architecture
that several families share (a ``Qwen2ForCausalLM`` may be mxbai v2 or another yes/no
reranker) is ambiguous without a rule or a known repo id: the error lists the rule names. Names
are never matched by substring.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from reranker.errors import ModelLoadError

__all__ = [
    "Family",
    "families",
    "family_named",
    "is_decoder_config",
    "position_offset",
    "repo_family",
    "resolve",
    "rule_names",
    "supported_architectures",
    "supported_models_markdown",
]

Kind = Literal["encoder", "decoder"]


@dataclass(frozen=True)
class Family:
    """One scoring rule and the checkpoints that use it."""

    #: The rule's name: what ``custom``'s ``rule`` field takes (``"bert"``, ``"qwen3"``).
    name: str
    kind: Kind
    architectures: tuple[str, ...]
    model_types: tuple[str, ...]
    #: The scoring rule in one line a user reads.
    rule: str
    #: The window, in words (``"max_position_embeddings - pad_token_id - 1"``).
    max_length: str
    #: Run memory per pair and length, in words.
    memory: str
    #: Known Hub repos with this rule, by exact id.
    repos: tuple[str, ...]
    takes_instruction: bool
    #: The family module (``graph`` and, for decoders, ``shape``).
    module: str
    #: Head per architecture (``"cls"``, ``"yes_no"``, ``"score"``, ...); missing: ``head``.
    heads: tuple[tuple[str, str], ...] = ()
    head: str = "cls"
    #: Graph inputs; ``token_type_ids`` is added where the checkpoint has token types.
    inputs: tuple[str, ...] = ("input_ids", "attention_mask")
    padding_side: Literal["right", "left"] = "right"
    #: Positions not usable as tokens (RoBERTa counts positions after the padding id):
    #: ``"pad+1"`` or ``"0"``.
    position_offset: Literal["0", "pad+1"] = "0"
    #: Decoders: the prompt module (template, token ids, truncation rule).
    prompt: str | None = None
    #: Head names the family takes and the token ids its head reads (prompt module names).
    display: str = ""

    def head_for(self, architecture: str | None) -> str:
        """The head this family builds for ``architecture``."""
        return dict(self.heads).get(architecture or "", self.head)


_ENCODER_MEMORY = "about 4 x layers' widest activation: 16 x hidden x length floats per pair"

_FAMILIES: tuple[Family, ...] = (
    Family(
        name="bert", kind="encoder", display="BERT",
        architectures=("BertForSequenceClassification",), model_types=("bert",),
        rule="pooler (tanh) on [CLS], then the classifier; sigmoid of the one logit",
        max_length="max_position_embeddings (512)", memory=_ENCODER_MEMORY,
        repos=("cross-encoder/ms-marco-MiniLM-L-6-v2", "Xenova/ms-marco-MiniLM-L-6-v2"),
        takes_instruction=False, module="reranker.models.encoders.bert",
        inputs=("input_ids", "attention_mask", "token_type_ids"),
    ),
    Family(
        name="xlm_roberta", kind="encoder", display="XLM-RoBERTa / RoBERTa",
        architectures=("XLMRobertaForSequenceClassification", "RobertaForSequenceClassification"),
        model_types=("xlm-roberta", "roberta", "camembert"),
        rule="dense, tanh, out_proj on <s>; sigmoid of the one logit",
        max_length="max_position_embeddings - pad_token_id - 1 (512 or 8192)",
        memory=_ENCODER_MEMORY,
        repos=("BAAI/bge-reranker-base", "BAAI/bge-reranker-large", "BAAI/bge-reranker-v2-m3",
               "Xenova/bge-reranker-base", "Xenova/bge-reranker-large",
               "onnx-community/bge-reranker-v2-m3-ONNX"),
        takes_instruction=False, module="reranker.models.encoders.xlm_roberta",
        position_offset="pad+1",
    ),
    Family(
        name="electra", kind="encoder", display="ELECTRA",
        architectures=("ElectraForSequenceClassification",), model_types=("electra",),
        rule="dense, GELU, out_proj on [CLS]; sigmoid of the one logit",
        max_length="max_position_embeddings (512)", memory=_ENCODER_MEMORY,
        repos=("cross-encoder/ms-marco-electra-base",),
        takes_instruction=False, module="reranker.models.encoders.electra",
        inputs=("input_ids", "attention_mask", "token_type_ids"),
    ),
    Family(
        name="modernbert", kind="encoder", display="ModernBERT",
        architectures=("ModernBertForSequenceClassification",), model_types=("modernbert",),
        rule="final norm, CLS (or mean) pooling, dense + activation + norm, classifier; sigmoid",
        max_length="max_position_embeddings (8192)",
        memory="global layers: heads x length^2 scores per pair; local layers a 128 window",
        repos=("Alibaba-NLP/gte-reranker-modernbert-base",),
        takes_instruction=False, module="reranker.models.encoders.modernbert",
    ),
    Family(
        name="qwen3", kind="decoder", display="Qwen3-Reranker",
        architectures=("Qwen3ForCausalLM", "Qwen3ForSequenceClassification"),
        model_types=("qwen3",),
        rule=('logit("yes") - logit("no") after the model card\'s instruction prompt '
              "(seq-cls conversions: their score row); sigmoid is P(yes)"),
        max_length="2048 by default, up to max_position_embeddings",
        memory="2 x heads x length^2 + length x (3 x intermediate + 4 x hidden) floats per pair",
        repos=("Qwen/Qwen3-Reranker-0.6B", "Qwen/Qwen3-Reranker-4B", "Qwen/Qwen3-Reranker-8B"),
        takes_instruction=True, module="reranker.models.decoders.qwen3",
        heads=(("Qwen3ForCausalLM", "yes_no"), ("Qwen3ForSequenceClassification", "score")),
        head="yes_no", padding_side="left", prompt="reranker.models.prompts.qwen3",
    ),
)


def families() -> tuple[Family, ...]:
    """Every supported family, in the order the supported-models page lists them."""
    return _FAMILIES


def family_named(name: str) -> Family:
    """The family whose rule is ``name``; ``ModelLoadError`` listing the rules otherwise."""
    for family in _FAMILIES:
        if family.name == name:
            return family
    raise ModelLoadError(f"unknown scoring rule {name!r}; rules: {', '.join(rule_names())}")


def rule_names() -> tuple[str, ...]:
    """What ``custom``'s ``rule`` field takes."""
    return tuple(f.name for f in _FAMILIES)


def supported_architectures() -> str:
    """Every architecture the table builds, for error messages."""
    seen = dict.fromkeys(a for f in _FAMILIES for a in f.architectures)
    return ", ".join(seen)


def repo_family(repo_id: str | None) -> Family | None:
    """The family a known Hub repo uses (exact id), else ``None``."""
    if not repo_id:
        return None
    return next((f for f in _FAMILIES if repo_id in f.repos), None)


def _architecture(config: Mapping[str, Any]) -> str | None:
    archs = config.get("architectures")
    if isinstance(archs, list) and archs and isinstance(archs[0], str):
        return archs[0]
    return None


def _model_type(config: Mapping[str, Any]) -> str | None:
    value = config.get("model_type")
    return value if isinstance(value, str) else None


def _candidates(config: Mapping[str, Any]) -> list[Family]:
    arch = _architecture(config)
    if arch is not None:
        return [f for f in _FAMILIES if arch in f.architectures]
    if config.get("architectures"):
        return []  # a list the table cannot read: not guessed from model_type
    model_type = _model_type(config)
    return [f for f in _FAMILIES if model_type in f.model_types]


def resolve(config: Mapping[str, Any], *, repo_id: str | None = None, rule: str | None = None,
            source: str = "the checkpoint") -> Family:
    """The family that scores a checkpoint with this ``config.json``.

    Raises:
        ModelLoadError: an architecture the table does not have (listing those it has), a
            ``rule`` that does not fit the architecture, or an ambiguous architecture without
            a rule or a known repo id (listing the rules).
    """
    arch, model_type = _architecture(config), _model_type(config)
    candidates = _candidates(config)
    if rule is not None:
        chosen = family_named(rule)
        if candidates and chosen not in candidates:
            raise ModelLoadError(
                f"rule {rule!r} does not score {arch or model_type} checkpoints ({source}); "
                f"rules for it: {', '.join(f.name for f in candidates)}")
        if not candidates and not (arch in chosen.architectures or model_type in
                                   chosen.model_types):
            raise _unsupported(config, source)
        return chosen
    if not candidates:
        raise _unsupported(config, source)
    if len(candidates) == 1:
        return candidates[0]
    known = repo_family(repo_id)
    if known in candidates:
        return known
    raise ModelLoadError(
        f"{source} ({arch or model_type}) can be scored by several rules and its files do not "
        "say which: set the custom model's 'rule' to one of "
        f"{', '.join(c.name for c in candidates)}"
    )


def _unsupported(config: Mapping[str, Any], source: str) -> ModelLoadError:
    return ModelLoadError(
        f"cannot build a reranker for architectures={config.get('architectures')!r} "
        f"(model_type={config.get('model_type')!r}) from {source}; supported architectures: "
        f"{supported_architectures()}; or point the model at a repo with an ONNX export"
    )


def is_decoder_config(config: Mapping[str, Any], repo_id: str | None = None) -> bool:
    """Whether a ``config.json`` goes to the decoder runner: a decoder family's architecture
    or model type, a known decoder repo, or any other ``*ForCausalLM`` (which the decoder
    path then refuses, listing what is supported)."""
    known = repo_family(repo_id)
    if known is not None:
        return known.kind == "decoder"
    candidates = _candidates(config)
    if candidates:
        return any(f.kind == "decoder" for f in candidates)
    return (_architecture(config) or "").endswith("ForCausalLM")


def position_offset(config: Mapping[str, Any]) -> int:
    """Positions of ``max_position_embeddings`` that tokens cannot use (by ``model_type``)."""
    model_type = _model_type(config)
    family = next((f for f in _FAMILIES if model_type in f.model_types), None)
    if family is None or family.position_offset == "0":
        return 0
    pad = config.get("pad_token_id", 1)
    return (pad if isinstance(pad, int) and not isinstance(pad, bool) else 1) + 1


def supported_models_markdown() -> str:
    """The Supported models table (Markdown), one row per family."""
    lines = [
        "| Family | Architectures | Scoring rule | Max length | Memory | Instruction | "
        "Known repos |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in _FAMILIES:
        cells = [
            f"{f.display or f.name} (`{f.name}`)",
            ", ".join(f"`{a}`" for a in f.architectures),
            f.rule,
            f.max_length,
            f.memory,
            "yes" if f.takes_instruction else "no",
            ", ".join(f"`{r}`" for r in f.repos) or "-",
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
