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
    "architecture_of",
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

# The decoder runner's run-memory rule (DecoderShape.run_memory_bytes), for the new families.
_DECODER_MEMORY = ("2 x heads x length^2 + length x (3 x intermediate + 4 x heads x head_dim + "
                   "4 x hidden) float32 per pair")


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
    #: Chosen only by an exact repo id or the ``rule`` field, never by architecture alone: its
    #: architecture is a generic LLM's (``Qwen2ForCausalLM``) whose files cannot tell the rule.
    by_name_only: bool = False
    #: Graph inputs; ``token_type_ids`` is added where the checkpoint has token types.
    inputs: tuple[str, ...] = ("input_ids", "attention_mask")
    padding_side: Literal["right", "left"] = "right"
    #: Positions not usable as tokens (RoBERTa counts positions after the padding id):
    #: ``"pad+1"`` or ``"0"``.
    position_offset: Literal["0", "pad+1"] = "0"
    #: Decoders: the prompt module (template, token ids, truncation rule).
    prompt: str | None = None
    #: The family's name as users know it (``"XLM-RoBERTa / RoBERTa"``); default ``name``.
    display: str = ""
    #: Custom-code families whose architecture name is a stock one's: the class their
    #: ``config.json`` ``auto_map["AutoConfig"]`` names (exactly), which tells them apart.
    config_class: str | None = None

    def head_for(self, architecture: str | None) -> str:
        """The head this family builds for ``architecture``."""
        return dict(self.heads).get(architecture or "", self.head)

    def head_of(self, config: Mapping[str, Any]) -> str:
        """The head this family builds for a ``config.json`` (whatever its ``architectures``
        holds: a hostile value is no architecture)."""
        return self.head_for(architecture_of(config))


_ENCODER_MEMORY = ("2 x heads x length^2 + length x (intermediate + 4 x hidden) float32 per "
                   "pair (one layer's attention and widest activations)")

_FAMILIES: tuple[Family, ...] = (
    Family(
        name="bert", kind="encoder", display="BERT",
        architectures=("BertForSequenceClassification",), model_types=("bert",),
        rule="pooler (tanh) on [CLS], then the classifier: the logit (score: its sigmoid)",
        max_length="max_position_embeddings (512)", memory=_ENCODER_MEMORY,
        repos=("cross-encoder/ms-marco-MiniLM-L-6-v2", "Xenova/ms-marco-MiniLM-L-6-v2"),
        takes_instruction=False, module="reranker.models.encoders.bert",
        inputs=("input_ids", "attention_mask", "token_type_ids"),
    ),
    Family(
        name="xlm_roberta", kind="encoder", display="XLM-RoBERTa / RoBERTa",
        architectures=("XLMRobertaForSequenceClassification", "RobertaForSequenceClassification"),
        model_types=("xlm-roberta", "roberta", "camembert"),
        rule="dense, tanh, out_proj on <s>: the logit (score: its sigmoid)",
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
        rule="dense, GELU, out_proj on [CLS]: the logit (score: its sigmoid)",
        max_length="max_position_embeddings (512)", memory=_ENCODER_MEMORY,
        repos=("cross-encoder/ms-marco-electra-base",),
        takes_instruction=False, module="reranker.models.encoders.electra",
        inputs=("input_ids", "attention_mask", "token_type_ids"),
    ),
    Family(
        name="modernbert", kind="encoder", display="ModernBERT",
        architectures=("ModernBertForSequenceClassification",), model_types=("modernbert",),
        rule=("final norm, CLS (or mean) pooling, dense + activation + norm, classifier: the "
              "logit (score: its sigmoid)"),
        max_length="max_position_embeddings (8192)",
        memory=_ENCODER_MEMORY,
        repos=("Alibaba-NLP/gte-reranker-modernbert-base",),
        takes_instruction=False, module="reranker.models.encoders.modernbert",
    ),
    Family(
        name="deberta_v2", kind="encoder", display="DeBERTa-v2 (mxbai-rerank v1)",
        architectures=("DebertaV2ForSequenceClassification",), model_types=("deberta-v2",),
        rule=("disentangled attention over log-bucketed relative positions; ContextPooler "
              "(dense + GELU) on [CLS], classifier; sigmoid of the one logit (mxbai-rerank v1)"),
        max_length="tokenizer model_max_length (512)",
        memory=("BERT's plus, per layer, heads x length x 2 x position_buckets position scores "
                "and an int64 heads x length^2 bucket index per pair"),
        repos=("mixedbread-ai/mxbai-rerank-xsmall-v1", "mixedbread-ai/mxbai-rerank-base-v1",
               "mixedbread-ai/mxbai-rerank-large-v1"),
        takes_instruction=False, module="reranker.models.encoders.deberta_v2",
    ),
    Family(
        name="mgte", kind="encoder", display="mGTE (gte-multilingual-reranker)",
        architectures=("NewForSequenceClassification",), model_types=("new",),
        rule=("rotary attention (NTK rope_scaling), gated MLP; pooler (tanh) on <s>, "
              "classifier; sigmoid of the one logit"),
        max_length="tokenizer model_max_length (8192)",
        memory=("heads x length^2 scores + length x 2 x intermediate floats per pair (pairs "
                "near 8192 tokens need about 3 GiB each)"),
        repos=("Alibaba-NLP/gte-multilingual-reranker-base",),
        takes_instruction=False, module="reranker.models.encoders.mgte",
    ),
    Family(
        name="jinabert", kind="encoder", display="JinaBERT (jina-reranker-v1)",
        architectures=("JinaBertForSequenceClassification",), model_types=(),
        rule=("ALiBi attention, gated MLP with its own post-norm; pooler (tanh) on [CLS], "
              "classifier; sigmoid of the one logit"),
        max_length="tokenizer model_max_length (8192)",
        memory=("heads x length^2 scores (plus one ALiBi bias of that size per batch) + "
                "length x 2 x intermediate floats per pair"),
        repos=("jinaai/jina-reranker-v1-turbo-en", "jinaai/jina-reranker-v1-tiny-en"),
        takes_instruction=False, module="reranker.models.encoders.jinabert",
        inputs=("input_ids", "attention_mask", "token_type_ids"),
    ),
    Family(
        name="jina_v2", kind="encoder", display="jina-reranker-v2 (XLM-R flash)",
        architectures=("XLMRobertaForSequenceClassification",), model_types=(),
        config_class="XLMRobertaFlashConfig",
        rule=("XLM-R under flash-attn tensor names (packed Wqkv); dense, tanh, out_proj on <s>; "
              "sigmoid of the one logit (compute_score)"),
        max_length="max_position_embeddings - pad_token_id - 1 (1024)",
        memory=_ENCODER_MEMORY,
        repos=("jinaai/jina-reranker-v2-base-multilingual",),
        takes_instruction=False, module="reranker.models.encoders.jina_v2",
        position_offset="pad+1",
    ),
    Family(
        name="qwen3", kind="decoder", display="Qwen3-Reranker",
        architectures=("Qwen3ForCausalLM", "Qwen3ForSequenceClassification"),
        model_types=("qwen3",),
        rule=('logit("yes") - logit("no") after the model card\'s instruction prompt '
              "(seq-cls conversions: their score row); sigmoid is P(yes)"),
        max_length="2048 by default, up to max_position_embeddings",
        memory=("2 x heads x length^2 + length x (3 x intermediate + 4 x heads x head_dim + "
                "4 x hidden) float32 per pair"),
        repos=("Qwen/Qwen3-Reranker-0.6B", "Qwen/Qwen3-Reranker-4B", "Qwen/Qwen3-Reranker-8B"),
        takes_instruction=True, module="reranker.models.decoders.qwen3",
        heads=(("Qwen3ForCausalLM", "yes_no"), ("Qwen3ForSequenceClassification", "score")),
        head="yes_no", padding_side="left", prompt="reranker.models.prompts.qwen3",
    ),
    Family(
        name="mxbai_v2", kind="decoder", display="mxbai-rerank v2 (Qwen2)",
        architectures=("Qwen2ForCausalLM",), model_types=("qwen2",),
        rule=('logit("1") - logit("0") after mxbai-rerank\'s chat and task prompt, the query cut '
              "to 3/4 of max_length before the document; sigmoid is P(relevant)"),
        max_length=("2048 by default (the prompt, template included), up to the tokenizer's "
                    "model_max_length"),
        memory=_DECODER_MEMORY,
        repos=("mixedbread-ai/mxbai-rerank-base-v2", "mixedbread-ai/mxbai-rerank-large-v2"),
        takes_instruction=True, module="reranker.models.decoders.qwen2", head="yes_no",
        padding_side="left", prompt="reranker.models.prompts.mxbai_v2", by_name_only=True,
    ),
    Family(
        name="bge_gemma", kind="decoder", display="bge-reranker-v2-gemma (Gemma)",
        architectures=("GemmaForCausalLM",), model_types=("gemma",),
        rule=('logit("Yes") after FlagEmbedding\'s "A: "/"B: " pair and Yes/No prompt (query '
              "cut to 3/4 of max_length, passage to max_length); sigmoid as normalize=True"),
        max_length="FlagEmbedding's 512 + the prompt by default, up to max_position_embeddings",
        memory=_DECODER_MEMORY,
        repos=("BAAI/bge-reranker-v2-gemma",),
        takes_instruction=False, module="reranker.models.decoders.gemma", head="yes",
        padding_side="left", prompt="reranker.models.prompts.bge_gemma", by_name_only=True,
    ),
    Family(
        name="minicpm_layerwise", kind="decoder",
        display="bge-reranker-v2-minicpm-layerwise (MiniCPM)",
        architectures=("LayerWiseMiniCPMForCausalLM",), model_types=("minicpm",),
        rule=("the cutoff layer's score row (model option cutoff_layer, default the last) "
              "after FlagEmbedding's Yes/No prompt; sigmoid as normalize=True"),
        max_length="FlagEmbedding's 512 + the prompt by default, up to max_position_embeddings",
        memory=_DECODER_MEMORY + " (only the layers up to the cutoff run)",
        repos=("BAAI/bge-reranker-v2-minicpm-layerwise",),
        takes_instruction=False, module="reranker.models.decoders.minicpm", head="layerwise",
        padding_side="left", prompt="reranker.models.prompts.minicpm_layerwise",
    ),
    Family(
        name="nemotron", kind="decoder", display="Llama Nemotron rerank (bidirectional Llama)",
        architectures=("LlamaBidirectionalForSequenceClassification",),
        model_types=("llama_bidirec",),
        rule=('bidirectional attention over "question:{q} \\n \\n passage:{d}", mean pooling, '
              "the score row / temperature; sigmoid of the logit"),
        max_length="2048 by default, up to max_position_embeddings (the card documents 8192)",
        memory=_DECODER_MEMORY + "; every layer runs every position",
        repos=("nvidia/llama-nemotron-rerank-1b-v2",),
        takes_instruction=False, module="reranker.models.decoders.llama_bidirectional",
        head="mean_score", padding_side="left", prompt="reranker.models.prompts.nemotron",
    ),
    Family(
        name="zerank", kind="decoder", display="zerank (Qwen3)",
        architectures=("Qwen3ForCausalLM",), model_types=("qwen3",),
        rule=('logit("Yes") / 5 after the chat template (query as system, document as user); '
              "sigmoid is the authors' score"),
        max_length="2048 by default, up to max_position_embeddings",
        memory=_DECODER_MEMORY,
        repos=("zeroentropy/zerank-1", "zeroentropy/zerank-1-small", "zeroentropy/zerank-2"),
        takes_instruction=False, module="reranker.models.decoders.zerank", head="yes",
        padding_side="left", prompt="reranker.models.prompts.zerank", by_name_only=True,
    ),
    Family(
        name="qwen3_vl", kind="decoder", display="Qwen3-VL-Reranker (text and images)",
        architectures=("Qwen3VLForConditionalGeneration",), model_types=("qwen3_vl",),
        rule=('h_last . (lm_head["yes"] - lm_head["no"]) after the authors\' multimodal '
              "instruction prompt (images as merged vision tokens); sigmoid is the score"),
        max_length="2048 by default (image tokens count), up to max_position_embeddings",
        memory=("decoder as Qwen3 over text + image tokens; vision tower per image: "
                "2 x patches^2 (one head at a time) + patches x (intermediate + 6 x hidden)"),
        repos=("Qwen/Qwen3-VL-Reranker-2B", "Qwen/Qwen3-VL-Reranker-8B"),
        takes_instruction=True, module="reranker.models.decoders.qwen3_vl",
        head="score_row", padding_side="left", prompt="reranker.models.prompts.qwen3_vl",
        inputs=("input_ids", "attention_mask", "position_ids", "pixel_values"),
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


def architecture_of(config: Mapping[str, Any]) -> str | None:
    """``architectures[0]`` of a ``config.json``, or None where it holds no name."""
    archs = config.get("architectures")
    if isinstance(archs, list) and archs and isinstance(archs[0], str):
        return archs[0]
    return None


def _model_type(config: Mapping[str, Any]) -> str | None:
    value = config.get("model_type")
    return value if isinstance(value, str) else None


def _config_class(config: Mapping[str, Any]) -> str | None:
    auto_map = config.get("auto_map")
    name = auto_map.get("AutoConfig") if isinstance(auto_map, Mapping) else None
    # "owner/repo--module.ClassName" (or "module.ClassName"): the class is after the last dot.
    return name.rsplit(".", 1)[-1] if isinstance(name, str) else None


def _candidates(config: Mapping[str, Any], *, named: bool = True) -> list[Family]:
    """Families of the config's architecture (``named=False``: not those chosen by name only)."""
    arch = architecture_of(config)
    if arch is not None:
        found = [f for f in _FAMILIES if arch in f.architectures]
    elif config.get("architectures"):
        return []  # a list the table cannot read: not guessed from model_type
    else:
        model_type = _model_type(config)
        found = [f for f in _FAMILIES if model_type in f.model_types]
    declared = _config_class(config)
    custom = [f for f in found if f.config_class is not None and f.config_class == declared]
    found = custom or [f for f in found if f.config_class is None]
    return found if named else [f for f in found if not f.by_name_only]


def resolve(config: Mapping[str, Any], *, repo_id: str | None = None, rule: str | None = None,
            source: str = "the checkpoint") -> Family:
    """The family that scores a checkpoint with this ``config.json``.

    Raises:
        ModelLoadError: an architecture the table does not have (listing those it has), a
            ``rule`` that does not fit the architecture, or an ambiguous architecture without
            a rule or a known repo id (listing the rules).
    """
    arch, model_type = architecture_of(config), _model_type(config)
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
    known = repo_family(repo_id)
    if known in candidates:
        return known
    claiming = _candidates(config, named=False)
    if len(claiming) == 1:
        return claiming[0]
    names = ", ".join(c.name for c in candidates)
    if len(candidates) > 1:
        why = "can be scored by several rules and its files do not say which"
    else:  # a generic LLM's architecture: its files cannot say it is a reranker at all
        why = "is also a plain LLM's architecture, so its files do not say how to score it"
    raise ModelLoadError(
        f"{source} ({arch or model_type}) {why}: set the custom model's 'rule' to one of "
        f"{names}"
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
    return (architecture_of(config) or "").endswith("ForCausalLM")


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
